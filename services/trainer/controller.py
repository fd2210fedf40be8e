"""Runs one Trainer in a background thread for the service, and lets RPCs watch it.

Domain only (no protobuf): the servicer translates. StartTraining is idempotent:
while a run is going, or once it is done, starting again returns the current status.
A failed or stopped run can be started again (it resumes from its last checkpoint).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from services.trainer.rundir import resolve_run_paths
from services.trainer.training import RunConfig, Trainer, TrainerStatus, TrainingFailed, TrainingStopped
from trajlab.errors import ConfigError, FailedPrecondition, InvalidArgument, quoted
from trajlab.profiles import BranchConfig, Profile, load_profile

log = logging.getLogger(__name__)

_PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TERMINAL = ("done", "failed")
MAX_WATCH_INTERVAL_SECONDS = 3600.0  # longest WatchStatus throttle a client may ask for


class TrainingController:
    """Owns the current Trainer of this branch and the thread that runs it."""

    def __init__(
        self,
        *,
        branch: BranchConfig,
        profile: Profile,
        make_run_config: Callable[[Profile], RunConfig],
        on_update: Callable[[TrainerStatus], None] | None = None,
    ) -> None:
        self.branch = branch
        self._make_run_config = make_run_config
        self._on_update = on_update
        self._cond = threading.Condition()
        self._version = 0  # bumped on every status change; watchers wait on it
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._trainer = self._new_trainer(profile)
        self._notify(self._trainer.status)

    def _new_trainer(self, profile: Profile) -> Trainer:
        return Trainer(self._make_run_config(profile), on_update=self._notify, stop_event=self._stop)

    def _notify(self, status: TrainerStatus) -> None:
        if self._on_update is not None:
            self._on_update(status)
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    # ---- RPC-facing operations -------------------------------------------------------
    @property
    def profile(self) -> Profile:
        return self._trainer.cfg.profile

    def status(self) -> TrainerStatus:
        return self._trainer.status

    def history(self) -> list[dict[str, Any]]:
        return self._trainer.history

    def results(self) -> dict[str, Any]:
        res = self._trainer.results
        if res is None:
            s = self._trainer.status
            why = f": {s.error}" if s.state == "failed" else ""
            raise FailedPrecondition(
                f"no results yet for branch {s.branch}: training is {s.state} "
                f"(epoch {s.epoch}/{s.total_epochs}){why}; call StartTraining and wait for DONE"
            )
        return res

    def start(self, profile_name: str = "") -> tuple[bool, TrainerStatus]:
        """Start (or resume) training; returns (started by this call, status)."""
        with self._cond:
            if self._closed:
                raise FailedPrecondition("the trainer is shutting down")
            if profile_name and profile_name != self.profile.name:
                if not _PROFILE_NAME.match(profile_name):
                    raise InvalidArgument(
                        f"profile: {quoted(profile_name)} is not a profile name (e.g. 'quick')"
                    )
                try:
                    profile = load_profile(profile_name)
                except ConfigError as exc:
                    raise InvalidArgument(f"profile: {exc}") from None
                if self._running() or self._trainer.status.state == "done":
                    raise FailedPrecondition(
                        f"profile: this trainer is {self._trainer.status.state} with profile "
                        f"{self.profile.name!r}; it cannot switch to {profile_name!r}"
                    )
                self._trainer = self._new_trainer(profile)
            if self._running() or self._trainer.status.state == "done":
                return False, self._trainer.status
            if self._trainer.status.state == "failed":
                # A fresh Trainer resumes from the last good checkpoint of this run.
                self._trainer = self._new_trainer(self.profile)
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, args=(self._trainer,), name=f"trainer-{self.branch.name}", daemon=True
            )
            self._thread.start()
        return True, self._trainer.status

    def resume_if_interrupted(self) -> bool:
        """At service start: resume a run whose checkpoints are on disk. True when started."""
        if self._trainer.status.state == "idle" and self._trainer.has_checkpoint():
            log.info("branch %s: found checkpoints of an interrupted run; resuming", self.branch.name)
            return self.start()[0]
        return False

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, trainer: Trainer) -> None:
        try:
            trainer.run()
        except TrainingStopped:
            log.info("branch %s: training stopped; it resumes from its last checkpoint", self.branch.name)
        except TrainingFailed:
            pass  # already logged and in the status
        except Exception:
            log.exception("branch %s: unexpected error in the training thread", self.branch.name)
        finally:
            self._notify(trainer.status)

    def watch(
        self, min_interval_seconds: float, is_active: Callable[[], bool] = lambda: True
    ) -> Iterator[TrainerStatus]:
        """Status now, then on every change (at most one per interval), until DONE or FAILED."""
        if (
            not math.isfinite(min_interval_seconds)
            or not 0 < min_interval_seconds <= MAX_WATCH_INTERVAL_SECONDS
        ):
            raise InvalidArgument(
                f"min_interval_seconds must be in (0, {MAX_WATCH_INTERVAL_SECONDS:g}] seconds, "
                f"got {min_interval_seconds}"
            )
        seen = -1
        last: TrainerStatus | None = None
        while is_active():
            with self._cond:
                if self._version == seen and not self._closed:
                    self._cond.wait(timeout=min(min_interval_seconds * 10, 5.0))
                seen = self._version
                closed = self._closed
            # Compare snapshots, not just the version counter: the trainer sets its
            # status a moment before it notifies, and a final DONE must never be dropped.
            status = self._trainer.status
            if status != last:
                yield status
                last = status
            if status.state in TERMINAL or closed:
                return
            # Throttle in short naps so a cancelled stream or a shutdown ends promptly.
            until = time.monotonic() + min_interval_seconds
            while is_active() and not self._closed and (left := until - time.monotonic()) > 0:
                time.sleep(min(left, 0.25))

    def close(self, timeout: float = 30.0) -> None:
        """Stop a running training between steps (it resumes from its checkpoint later)."""
        with self._cond:
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def make_run_config_factory(settings: Any, branch: BranchConfig) -> Callable[[Profile], RunConfig]:
    """RunConfig for a profile from the service settings (paths by env, see the PREAMBLE).

    A run directory in a bucket is pulled into its local copy first (services.trainer.rundir),
    so a trainer rescheduled on another node resumes from the newest complete checkpoint.
    """

    def factory(profile: Profile) -> RunConfig:
        paths = resolve_run_paths(
            settings.resolved_run_dir(),
            settings.resolved_data_dir(profile.name),
            cache_dir=Path(settings.cache_dir),
            profile=profile,
        )
        return RunConfig(
            branch=branch,
            profile=profile,
            data_dir=paths.data_dir,
            data_source=paths.data_source,
            run_dir=paths.run_dir,
            on_saved=paths.on_saved,
            model_repo=settings.model_repo,
            text_encoder=settings.text_encoder,
            text_cache_dir=Path(settings.text_cache_dir),
            threads=settings.threads,
            status_interval_seconds=settings.status_interval_seconds,
            progress=False,  # a service logs; the bar is for terminals running the CLI
        )

    return with_seed(factory, getattr(settings, "seed", None))


def with_seed(factory: Callable[[Profile], RunConfig], seed: int | None) -> Callable[[Profile], RunConfig]:
    """A run of the matrix: every profile it is given trains with its own seed (the dataset's stays)."""
    if seed is None:
        return factory

    def seeded(profile: Profile) -> RunConfig:
        training = profile.training.model_copy(update={"seed": seed})
        return factory(profile.model_copy(update={"training": training}))

    return seeded

"""Live view of every trainer: one WatchStatus stream per trainer, one rich table redrawn in place.

In-process use (``trajlab run`` draws the same table inside its own progress view)::

    mon = Monitor({"b1": "127.0.0.1:50052", "b2": "127.0.0.1:50062"})
    mon.start()                      # one thread per trainer, reconnecting while it is down
    table = render_table(mon.snapshot())
    mon.stop()
    # or, from statuses polled elsewhere ({branch: TrainingStatus or None when unreachable}):
    table = render_table(views_from_statuses(statuses))

A trainer that cannot be reached is a row that says "unreachable" with the reason,
never an exception.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

_STATE = {
    trainer_pb2.TRAINING_STATE_UNSPECIFIED: ("unknown", "dim"),
    trainer_pb2.TRAINING_STATE_IDLE: ("idle", "dim"),
    trainer_pb2.TRAINING_STATE_TRAINING: ("training", "cyan"),
    trainer_pb2.TRAINING_STATE_EVALUATING: ("evaluating", "blue"),
    trainer_pb2.TRAINING_STATE_EXPORTING: ("exporting", "blue"),
    trainer_pb2.TRAINING_STATE_DONE: ("done", "green"),
    trainer_pb2.TRAINING_STATE_FAILED: ("failed", "bold red"),
}
FINISHED = (trainer_pb2.TRAINING_STATE_DONE, trainer_pb2.TRAINING_STATE_FAILED)


@dataclass(frozen=True)
class BranchView:
    """What the monitor knows about one trainer."""

    branch: str
    target: str
    status: trainer_pb2.TrainingStatus | None  # last status received, if any
    error: str = ""  # why the trainer is unreachable now; "" when it answers

    @property
    def reachable(self) -> bool:
        return not self.error

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status.state in FINISHED


def _reason(exc: grpc.RpcError) -> str:
    """A short reason for a table cell: gRPC's connection details run to several lines."""
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    details = str(exc.details() if hasattr(exc, "details") else exc)
    for known in ("Connection refused", "Deadline Exceeded", "No route to host", "DNS resolution failed"):
        if known.lower() in details.lower():
            return f"{name}: {known.lower()}"
    return f"{name}: {details[:80]}"


def poll_once(targets: dict[str, str], *, timeout_seconds: float = 3.0) -> list[BranchView]:
    """One GetStatus per trainer, in parallel (an unreachable trainer costs one deadline)."""

    def one(item: tuple[str, str]) -> BranchView:
        branch, target = item
        try:
            with grpc.insecure_channel(target) as ch:
                stub = trainer_pb2_grpc.TrainerServiceStub(ch)
                st = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=timeout_seconds).status
            return BranchView(branch, target, st)
        except grpc.RpcError as exc:
            return BranchView(branch, target, None, _reason(exc))

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(one, targets.items()))


def views_from_statuses(
    statuses: dict[str, trainer_pb2.TrainingStatus | None], targets: dict[str, str] | None = None
) -> list[BranchView]:
    """Views from statuses polled elsewhere (e.g. ``trajlab run``'s own loop); None = unreachable."""
    targets = targets or {}
    return [
        BranchView(b, targets.get(b, ""), st, "" if st is not None else "unreachable")
        for b, st in statuses.items()
    ]


class Monitor:
    """Follows every trainer's WatchStatus stream on its own thread, reconnecting while it is down."""

    def __init__(
        self,
        targets: dict[str, str],
        *,
        min_interval_seconds: float = 1.0,
        retry_seconds: float = 2.0,
        connect_timeout_seconds: float = 3.0,
    ) -> None:
        self.targets = dict(targets)
        self.min_interval = min_interval_seconds
        self.retry = retry_seconds
        self.connect_timeout = connect_timeout_seconds
        self._views: dict[str, BranchView] = {
            b: BranchView(b, t, None, "connecting") for b, t in targets.items()
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._calls: dict[str, grpc.Future] = {}
        self._threads: list[threading.Thread] = []

    def _set(self, branch: str, **changes: object) -> None:
        with self._lock:
            v = self._views[branch]
            self._views[branch] = BranchView(
                branch,
                v.target,
                changes.get("status", v.status),  # type: ignore[arg-type]
                changes.get("error", v.error),  # type: ignore[arg-type]
            )

    def _follow(self, branch: str, target: str) -> None:
        while not self._stop.is_set():
            channel = grpc.insecure_channel(target)
            try:
                grpc.channel_ready_future(channel).result(timeout=self.connect_timeout)
                stub = trainer_pb2_grpc.TrainerServiceStub(channel)
                call = stub.WatchStatus(
                    trainer_pb2.WatchStatusRequest(min_interval_seconds=self.min_interval)
                )
                with self._lock:
                    self._calls[branch] = call
                if self._stop.is_set():
                    call.cancel()
                for resp in call:
                    self._set(branch, status=resp.status, error="")
                # The stream ends when training ends; a finished run needs no more watching.
                with self._lock:
                    finished = self._views[branch].finished
                if finished:
                    return
            except grpc.FutureTimeoutError:
                self._set(branch, error=f"no connection within {self.connect_timeout:g} s")
            except grpc.RpcError as exc:
                if self._stop.is_set() or exc.code() == grpc.StatusCode.CANCELLED:
                    return
                self._set(branch, error=_reason(exc))
            finally:
                with self._lock:
                    self._calls.pop(branch, None)
                channel.close()
            self._stop.wait(self.retry)

    def start(self) -> Monitor:
        for b, t in self.targets.items():
            th = threading.Thread(target=self._follow, args=(b, t), name=f"watch-{b}", daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            calls = list(self._calls.values())
        for c in calls:
            with contextlib.suppress(Exception):
                c.cancel()
        for th in self._threads:
            th.join(timeout)

    def snapshot(self) -> list[BranchView]:
        with self._lock:
            return [self._views[b] for b in self.targets]

    def all_finished(self) -> bool:
        return all(v.finished for v in self.snapshot())

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _eta(seconds: float) -> str:
    if seconds < 0:
        return "?"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def render_table(
    views: list[BranchView], *, title: str = "trajlab training", caption: str | None = None
) -> Table:
    """The monitor's table for a snapshot: one row per branch."""
    t = Table(title=title, caption=caption, expand=False, header_style="bold")
    for col, justify in (
        ("branch", "left"),
        ("state", "left"),
        ("epoch", "right"),
        ("loss", "right"),
        ("val acc", "right"),
        ("MAE %", "right"),
        ("clips/s", "right"),
        ("ETA", "right"),
        ("model", "right"),
        ("note", "left"),
    ):
        if col == "note":
            t.add_column(col, justify=justify, overflow="fold", max_width=48)  # type: ignore[arg-type]
        else:
            t.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for v in views:
        st = v.status
        if st is None:
            state = Text(
                "unreachable" if v.error and v.error != "connecting" else "connecting", style="bold red"
            )
            note = f"{v.error} ({v.target})" if v.error != "connecting" else v.target
            t.add_row(v.branch, state, "-", "-", "-", "-", "-", "-", "-", note)
            continue
        name, style = _STATE.get(st.state, ("?", ""))
        running = st.state == trainer_pb2.TRAINING_STATE_TRAINING
        epoch = f"{st.epoch}/{st.total_epochs}"
        if running and st.steps_per_epoch:
            epoch += f" ({st.step}/{st.steps_per_epoch})"
        has_epoch = st.epoch > 0
        note = st.error if st.state == trainer_pb2.TRAINING_STATE_FAILED else ""
        if v.error:
            # Keep the last numbers, but say they are stale.
            name, style, note = "unreachable", "bold red", f"{v.error} (last seen: {_STATE[st.state][0]})"
        t.add_row(
            v.branch,
            Text(name, style=style),
            epoch,
            f"{st.train_loss:.4f}" if has_epoch else "-",
            f"{st.val_accuracy * 100:.1f} %" if has_epoch else "-",
            f"{st.forecast_mae_pct:.2f}" if has_epoch else "-",
            f"{st.clips_per_second:.1f}" if st.clips_per_second > 0 else "-",
            "-" if st.state in FINISHED else _eta(st.eta_seconds),
            f"v{st.model_version}" if st.model_version else "-",
            note,
        )
    return t


def run_live(
    monitor: Monitor,
    *,
    console: Console | None = None,
    refresh_seconds: float = 0.5,
    exit_when_finished: bool = True,
    stop: threading.Event | None = None,
    caption: Callable[[], str] | None = None,
) -> None:
    """Redraw the table in place until every trainer finished (or ``stop`` is set, or Ctrl-C)."""
    stop = stop or threading.Event()
    with Live(
        render_table(monitor.snapshot()), console=console, refresh_per_second=4, transient=False
    ) as live:
        try:
            while not stop.is_set():
                live.update(render_table(monitor.snapshot(), caption=caption() if caption else None))
                if exit_when_finished and monitor.all_finished():
                    break
                time.sleep(refresh_seconds)
        except KeyboardInterrupt:
            pass
        live.update(render_table(monitor.snapshot(), caption=caption() if caption else None))

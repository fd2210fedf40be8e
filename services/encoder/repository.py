"""The served models: watches the model repository, loads, swaps and unloads versions.

Triton's model-repository ideas, kept small:

- Only complete version directories count: ``trajlab.modelrepo`` publishes a
  version by renaming a finished temp directory to its integer name, and the
  scan lists integer-named directories only.
- A version is loaded, validated and warmed up (``runtime.load_session``) before
  it is swapped in; the swap replaces a branch's table under a lock, so a
  request sees either the old table or the new one.
- A request holds a *lease* on the version it resolved, and finishes on that
  version even if a newer one is swapped in meanwhile. A retired version is
  closed (batcher stopped, session released) when its last lease ends, so memory
  is returned instead of growing over load/unload cycles.
- A refused version (corrupt, checksum mismatch, bad metadata, incompatible
  shapes) is logged once, counted in ``trajlab_encoder_load_failures_total``,
  remembered so it is not retried every scan, and the previous version keeps
  serving.
- The newest ``keep_versions`` loadable versions per branch stay loaded; the
  newest is the default (version 0 in a request).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.encoder import metrics
from services.encoder.adaptive import AdaptiveBatcher
from services.encoder.batcher import DynamicBatcher
from services.encoder.errors import Cancelled, DeadlineExceeded
from services.encoder.layout import RunsInFlight, one_thread_session
from services.encoder.runtime import LoadedSession, ModelLoadError, SessionConfig, load_session
from trajlab.errors import FailedPrecondition, InvalidArgument, ModelNotFound, Unavailable, quoted
from trajlab.modelrepo import METADATA_FILE, MODEL_FILE, list_branches, scan_versions, utc_now
from trajlab.runs import default_run

log = logging.getLogger(__name__)
MAX_REMEMBERED_SKIPS = 4096  # skipped entries remembered so each is logged and counted once


@dataclass(frozen=True)
class BatchingConfig:
    """Batching per model version: "off" (each request alone), "adaptive" (requests that
    queue while the version runs go into its next run), "window" (a batcher thread waits
    up to max_queue_delay_s for more)."""

    mode: str = "adaptive"  # as EncoderSettings.batching
    max_batch_size: int = 8  # clips
    max_queue_delay_s: float = 0.002  # seconds
    max_queue_size: int = 256  # requests
    concurrency: int = 1  # adaptive: batches of a version in flight at once (= inference_concurrency)


class ServedModel:
    """One loaded version: its session, metadata, batcher and lease count."""

    def __init__(
        self,
        branch: str,
        version: int,
        directory: Path,
        loaded: LoadedSession,
        batching: BatchingConfig,
        run_slots: threading.Semaphore,
        narrow: LoadedSession | None = None,
        in_flight: RunsInFlight | None = None,
    ) -> None:
        # narrow: the model on one intra-op thread, for runs beside another (services.encoder.layout)
        self.branch = branch
        self.version = version
        self.directory = directory
        self.metadata = loaded.metadata
        self.metadata_json = loaded.metadata_json
        self.sha256 = loaded.sha256
        self.provider = loaded.provider
        self.loaded_at = utc_now()
        self._loaded: LoadedSession | None = loaded
        self._narrow = narrow
        self._in_flight = in_flight
        self._run_slots = run_slots
        self.leases = 0  # guarded by the store's lock
        self.retired = False  # guarded by the store's lock
        self._batcher: DynamicBatcher | None = None
        self._adaptive: AdaptiveBatcher | None = None
        if batching.mode == "adaptive":
            self._adaptive = AdaptiveBatcher(
                self._run_direct,
                max_batch_size=batching.max_batch_size,
                max_queue_size=batching.max_queue_size,
                concurrency=batching.concurrency,
                slots=run_slots,
                on_batch=lambda n: metrics.BATCH_SIZE.labels(branch).observe(n),
            )
        elif batching.mode == "window":
            self._batcher = DynamicBatcher(
                self._run_direct,
                max_batch_size=batching.max_batch_size,
                max_queue_delay_s=batching.max_queue_delay_s,
                max_queue_size=batching.max_queue_size,
                name=f"{branch}-v{version}",
                on_batch=lambda n: metrics.BATCH_SIZE.labels(branch).observe(n),
            )

    @property
    def closed(self) -> bool:
        return self._loaded is None

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """Expected clip shape (frames, height, width, channels)."""
        i = self.metadata.input
        return (i.frames, i.height, i.width, i.channels)

    def _run_direct(self, x: np.ndarray) -> list[np.ndarray]:
        loaded = self._loaded
        if loaded is None:  # cannot happen while a lease is held; kept as a clear error
            raise Unavailable(f"model {self.branch} v{self.version} was unloaded")
        narrow, in_flight = self._narrow, self._in_flight
        if narrow is None or in_flight is None:
            return loaded.session.run(list(loaded.output_names), {loaded.input_name: x})
        with in_flight.run() as alone:
            chosen = loaded if alone else narrow
            return chosen.session.run(list(chosen.output_names), {chosen.input_name: x})

    def run(
        self,
        x: np.ndarray,
        *,
        deadline: float | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Run preprocessed clips (N, C, T, H, W) float32; returns probabilities, forecast, embedding
        [, track, track_confidence] (``metadata.output_names``).

        ``deadline`` is a ``time.monotonic()`` instant: work that cannot start before
        it is skipped and answered DEADLINE_EXCEEDED.
        """
        start = time.perf_counter()
        if self._adaptive is not None:
            outs = self._adaptive.run(x, deadline, is_active)
        elif self._batcher is not None:
            fut = self._batcher.submit(x, deadline)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                outs = fut.result(timeout=timeout)
            except FutureTimeout:
                fut.cancel()
                raise DeadlineExceeded(
                    f"deadline passed while waiting for model {self.branch} v{self.version}"
                ) from None
        else:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._run_slots.acquire(timeout=timeout):
                raise DeadlineExceeded(
                    f"deadline passed while waiting for model {self.branch} v{self.version}"
                )
            try:
                if is_active is not None and not is_active():
                    raise Cancelled("the call was cancelled before its clip was run")
                if deadline is not None and time.monotonic() >= deadline:
                    raise DeadlineExceeded("deadline passed before the clip was run")
                outs = self._run_direct(x)
            finally:
                self._run_slots.release()
            metrics.BATCH_SIZE.labels(self.branch).observe(x.shape[0])
        metrics.INFERENCE_SECONDS.labels(self.branch).observe(time.perf_counter() - start)
        return outs

    def close(self) -> None:
        """Stop the batcher and drop the session so onnxruntime frees its memory."""
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._adaptive is not None:
            self._adaptive.close()
        self._loaded = None
        self._narrow = None
        log.info("unloaded model %s v%d", self.branch, self.version, extra={"branch": self.branch})


@dataclass(frozen=True)
class _Failure:
    key: tuple[int, ...]  # file identity when it failed: retried only if the files change
    reason: str
    message: str


def _file_key(vdir: Path) -> tuple[int, ...]:
    out: list[int] = []
    for name in (MODEL_FILE, METADATA_FILE):
        try:
            st = (vdir / name).stat()
            out += [st.st_mtime_ns, st.st_size, st.st_ino]
        except OSError:
            out += [-1, -1, -1]
    return tuple(out)


class ModelStore:
    """Loaded versions by branch; scans the repository and swaps versions atomically."""

    def __init__(
        self,
        root: Path,
        *,
        session_config: SessionConfig | None = None,
        batching: BatchingConfig | None = None,
        keep_versions: int = 2,
        inference_concurrency: int = 1,
        hybrid_layout: bool = False,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        # hybrid_layout: a one-thread session per version for runs beside another (layout.py)
        self.root = Path(root)
        self._session_cfg = session_config or SessionConfig()
        # A version's adaptive batcher runs as many batches at once as the store allows runs.
        self._batching = dataclasses.replace(batching or BatchingConfig(), concurrency=inference_concurrency)
        self._keep = keep_versions
        self._run_slots = threading.Semaphore(inference_concurrency)
        self._in_flight = RunsInFlight() if hybrid_layout else None
        self._on_change = on_change
        self._lock = threading.Lock()
        self._scan_lock = threading.Lock()  # one scan at a time (watcher vs. tests)
        self._branches: dict[str, dict[int, ServedModel]] = {}
        self._failures: dict[tuple[str, int], _Failure] = {}
        self._skipped: set[tuple[str, str, str]] = set()  # (branch, entry, reason) already reported
        self._metric_branches: set[str] = set()  # branches whose gauges were set, to zero them when gone
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- watching -------------------------------------------------------------------------

    def start(self, poll_seconds: float) -> None:
        """Scan now, then every ``poll_seconds`` on a daemon thread until ``stop()``."""
        self.scan()
        self._thread = threading.Thread(
            target=self._watch, args=(poll_seconds,), name="model-watcher", daemon=True
        )
        self._thread.start()

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.scan()
            except Exception:  # a scan must never kill the watcher; the next one retries
                log.exception("model repository scan of %s failed", self.root)

    def stop(self) -> None:
        """Stop watching (models stay loaded until ``close()``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def close(self) -> None:
        """Stop watching and unload every version (after in-flight leases end)."""
        self.stop()
        with self._lock:
            tables, self._branches = self._branches, {}
        for table in tables.values():
            for m in table.values():
                self._retire(m)
        self._publish_metrics()

    # -- scanning ---------------------------------------------------------------------------

    def scan(self) -> bool:
        """Bring the loaded set in line with the repository once; True if anything changed."""
        with self._scan_lock:
            changed = False
            on_disk = set(list_branches(self.root)) if self.root.is_dir() else set()
            for branch in sorted(on_disk):
                try:
                    changed |= self._scan_branch(branch)
                except Exception as exc:  # one bad branch costs that branch's update, never the scan
                    self._skip_once(branch, "", "scan_error", f"{exc.__class__.__name__}: {exc}")
            with self._lock:
                gone = [b for b in self._branches if b not in on_disk]
                removed = [self._branches.pop(b) for b in gone]
            for table in removed:
                for m in table.values():
                    log.info("branch %s removed from %s", m.branch, self.root, extra={"branch": m.branch})
                    metrics.MODEL_UNLOADS.labels(m.branch).inc()
                    self._retire(m)
                changed = True
            if changed:
                self._publish_metrics()
                if self._on_change is not None:
                    self._on_change(self.has_models)
            return changed

    def _scan_branch(self, branch: str) -> bool:
        with self._lock:
            current = dict(self._branches.get(branch, {}))
        keep: list[ServedModel] = []
        versions, skipped = scan_versions(self.root, branch)
        for name, reason in skipped:
            self._skip_once(branch, name, reason, "not a version directory")
        for v in reversed(versions):
            if len(keep) >= self._keep:
                break
            if v in current:
                keep.append(current[v])
                continue
            vdir = self.root / branch / str(v)
            key = _file_key(vdir)
            failed = self._failures.get((branch, v))
            if failed is not None and failed.key == key:
                continue
            model = self._load(branch, v, vdir, key)
            if model is not None:
                keep.append(model)
        new_table = {m.version: m for m in keep}
        if new_table.keys() == current.keys():
            return False
        with self._lock:
            self._branches[branch] = new_table
        for v, m in current.items():
            if v not in new_table:
                log.info(
                    "retiring model %s v%d (newest loaded: %s)",
                    branch,
                    v,
                    max(new_table, default=None),
                    extra={"branch": branch},
                )
                metrics.MODEL_UNLOADS.labels(branch).inc()
                self._retire(m)
        # Forget failures of versions that no longer exist, so the dict stays small.
        on_disk = set(versions)
        with self._lock:
            for k in [k for k in self._failures if k[0] == branch and k[1] not in on_disk]:
                del self._failures[k]
        return True

    def _skip_once(self, branch: str, name: str, reason: str, detail: str) -> None:
        """Count and log a skipped repository entry the first time it is seen."""
        key = (branch, name, reason)
        with self._lock:
            if key in self._skipped:
                return
            if len(self._skipped) >= MAX_REMEMBERED_SKIPS:
                self._skipped.clear()  # a flood of junk entries: forget, at worst log again
            self._skipped.add(key)
        metrics.REPOSITORY_SKIPPED.labels(branch, reason).inc()
        log.warning(
            "model repository: skipped %s/%s (%s: %s); the loaded versions keep serving",
            branch,
            quoted(name),
            reason,
            detail,
            extra={"branch": branch},
        )

    def _load(self, branch: str, version: int, vdir: Path, key: tuple[int, ...]) -> ServedModel | None:
        try:
            loaded = load_session(vdir, self._session_cfg, root=self.root)
        except (ModelLoadError, OSError) as exc:
            reason = exc.reason if isinstance(exc, ModelLoadError) else "io"
            with self._lock:
                self._failures[(branch, version)] = _Failure(key, reason, str(exc))
            metrics.LOAD_FAILURES.labels(branch, reason).inc()
            log.error(
                "refused model %s v%d (%s): %s; the previous version keeps serving",
                branch,
                version,
                reason,
                exc,
                extra={"branch": branch},
            )
            return None
        narrow = (
            None
            if self._in_flight is None
            else one_thread_session(vdir, self._session_cfg, loaded, self.root)
        )
        model = ServedModel(
            branch, version, vdir, loaded, self._batching, self._run_slots, narrow, self._in_flight
        )
        metrics.MODEL_LOADS.labels(branch).inc()
        with self._lock:
            self._failures.pop((branch, version), None)
        log.info(
            "loaded model %s v%d in %.2f s on %s (input %s)",
            branch,
            version,
            loaded.load_seconds,
            model.provider,
            model.input_shape,
            extra={"branch": branch},
        )
        return model

    def _retire(self, m: ServedModel) -> None:
        with self._lock:
            m.retired = True
            idle = m.leases == 0
        if idle:
            m.close()

    def _publish_metrics(self) -> None:
        with self._lock:
            snapshot = {b: sorted(t) for b, t in self._branches.items()}
            known = set(snapshot) | {b for b, _ in self._failures}
        known |= self._metric_branches
        self._metric_branches = set(known)
        for b in known:
            vs = snapshot.get(b, [])
            metrics.MODELS_LOADED.labels(b).set(len(vs))
            metrics.DEFAULT_VERSION.labels(b).set(vs[-1] if vs else 0)

    # -- serving ----------------------------------------------------------------------------

    def is_loaded(self, branch: str) -> bool:
        """True when ``branch`` has at least one version serving."""
        with self._lock:
            return bool(self._branches.get(branch))

    @property
    def has_models(self) -> bool:
        with self._lock:
            return any(self._branches.values())

    def _run_of_locked(self, branch: str) -> str:
        """The run a name addresses: itself when loaded, else a plain branch name's default seed
        run (the lowest seed; trajlab.runs), else the name unchanged."""
        if branch in self._branches:
            return branch
        return default_run((b for b, t in self._branches.items() if t), branch) or branch

    def _resolve_locked(self, branch: str, version: int) -> ServedModel:
        if not branch:
            loaded = sorted(b for b, t in self._branches.items() if t)
            raise InvalidArgument(
                f"model.branch is required (loaded branches: {', '.join(loaded) or 'none'})"
            )
        branch = self._run_of_locked(branch)
        table = self._branches.get(branch) or {}
        failures = sorted(
            ((v, f) for (b, v), f in self._failures.items() if b == branch), key=lambda p: p[0], reverse=True
        )
        if not table:
            if failures:
                v, f = failures[0]
                raise FailedPrecondition(
                    f"branch {quoted(branch)} has no loadable version: "
                    f"v{v} was refused ({f.reason}): {f.message}"
                )
            if not any(self._branches.values()):
                raise Unavailable(f"no model loaded yet (watching {self.root}); retry shortly")
            loaded = sorted(b for b, t in self._branches.items() if t)
            raise ModelNotFound(f"unknown branch {quoted(branch)} (loaded branches: {', '.join(loaded)})")
        if version == 0:
            return table[max(table)]
        if version in table:
            return table[version]
        refused = dict(failures)
        if version in refused:
            f = refused[version]
            raise FailedPrecondition(
                f"version {version} of branch {quoted(branch)} was refused at load "
                f"({f.reason}): {f.message}; "
                f"loaded versions: {sorted(table)}"
            )
        raise ModelNotFound(
            f"version {version} of branch {quoted(branch)} is not loaded (loaded versions: {sorted(table)}; "
            f"the newest {self._keep} loadable versions are kept)"
        )

    @contextlib.contextmanager
    def lease(self, branch: str, version: int = 0) -> Iterator[ServedModel]:
        """Resolve branch/version (0 = newest) and hold it until the block ends."""
        with self._lock:
            model = self._resolve_locked(branch, version)
            model.leases += 1
        try:
            yield model
        finally:
            with self._lock:
                model.leases -= 1
                close = model.retired and model.leases == 0
            if close:
                model.close()

    def models(self, branch: str = "") -> list[tuple[ServedModel, bool]]:
        """Loaded versions (by branch, then version) with whether each is its branch's default;
        ``branch`` as a request names it (a plain branch name: its default seed run)."""
        with self._lock:
            out: list[tuple[ServedModel, bool]] = []
            branch = self._run_of_locked(branch) if branch else branch
            for b in sorted(self._branches):
                if branch and b != branch:
                    continue
                table = self._branches[b]
                newest = max(table, default=None)
                out += [(table[v], v == newest) for v in sorted(table)]
            return out

    def failures(self) -> Sequence[tuple[str, int, str, str]]:
        """Refused versions still on disk: (branch, version, reason, message)."""
        with self._lock:
            return [(b, v, f.reason, f.message) for (b, v), f in sorted(self._failures.items())]

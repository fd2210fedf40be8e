"""The hybrid thread layout: a run alone gets every intra-op thread, a run beside another gets one.

onnxruntime's intra-op pool splits each operator over its threads and the calling thread waits
(spinning) at the end of every parallel section for the slowest one: the best latency for a lone
request, but under concurrency two such runs on the same cores only get in each other's way. With
``intra_op_layout: hybrid`` each version keeps a second session with one intra-op thread; a run
that starts while another run of the store is in flight uses it, so under load the cores run
whole runs side by side (no parallel sections, no spin-waits) while a lone request still gets
them all. Measurements: bench/RESULTS.md (issue 25, helper "aio-encoder").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from services.encoder.runtime import LoadedSession, ModelLoadError, SessionConfig, load_session

log = logging.getLogger(__name__)


class RunsInFlight:
    """How many runs of a store's sessions are in flight; one instance per store (the cores are shared)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    @contextlib.contextmanager
    def run(self) -> Iterator[bool]:
        """Count a run while it is in flight; yields True if it started alone."""
        with self._lock:
            alone = self._n == 0
            self._n += 1
        try:
            yield alone
        finally:
            with self._lock:
                self._n -= 1


def one_thread_session(
    version_dir: Path, cfg: SessionConfig, loaded: LoadedSession, root: Path | None
) -> LoadedSession | None:
    """The version's one-thread session for runs beside another; None on a GPU (intra-op threads
    are the CPU's) or if it cannot be loaded (the version then runs every call on ``loaded``)."""
    if loaded.provider != "CPUExecutionProvider" or (cfg.intra_op_threads or 0) == 1:
        return None
    try:
        return load_session(version_dir, dataclasses.replace(cfg, intra_op_threads=1), root=root)
    except (ModelLoadError, OSError) as exc:
        log.warning("%s: no one-thread session, every run uses all intra-op threads (%s)", version_dir, exc)
        return None

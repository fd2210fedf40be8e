"""Adaptive batching: batch only when a queue forms.

A request for an idle model version runs at once, on the gRPC handler thread that
received it: no queue, no timer, no hand-off to another thread, so a lone client
pays nothing for batching. Requests that arrive while the version already runs
``concurrency`` batches wait in a FIFO queue; when a run ends, the oldest waiter
is woken to lead the next run and takes every queued request (up to
``max_batch_size`` clips) into one onnxruntime call, then hands each caller its
own rows. The batch size thus follows the load: 1 at one client, about the number
of waiting clients under concurrency, with no delay chosen in advance.

Requests whose deadline passed or whose caller went away while queued are
answered (DEADLINE_EXCEEDED / CANCELLED) and not run. The queue is bounded: a full
queue answers RESOURCE_EXHAUSTED at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from services.encoder.errors import Cancelled, DeadlineExceeded
from trajlab.errors import ResourceExhausted, Unavailable

RunFn = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass(eq=False)  # identity equality: deque.remove must find this very request
class _Request:
    x: np.ndarray  # (n, C, T, H, W) float32
    deadline: float | None  # time.monotonic() instant, None = no deadline
    is_active: Callable[[], bool] | None
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # set with `done`: this caller runs the next batch
    outs: list[np.ndarray] | None = None
    error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self.outs is not None or self.error is not None

    def finish(self, outs: list[np.ndarray] | None = None, error: BaseException | None = None) -> None:
        self.outs, self.error = outs, error
        self.done.set()

    def result(self) -> list[np.ndarray]:
        if self.error is not None:
            raise self.error
        assert self.outs is not None
        return self.outs


class AdaptiveBatcher:
    """Runs requests for one model version through ``run_fn``, batching those that queue."""

    def __init__(
        self,
        run_fn: RunFn,
        *,
        max_batch_size: int,
        max_queue_size: int,
        concurrency: int = 1,
        slots: threading.Semaphore | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """``concurrency``: runs of this version at once; ``slots``: a run also holds one of
        these (shared by every version of the store, so versions do not oversubscribe the CPU)."""
        self._run = run_fn
        self._max_batch = max_batch_size
        self._max_queue = max_queue_size
        self._concurrency = concurrency
        self._slots = slots
        self._on_batch = on_batch
        self._lock = threading.Lock()
        self._queue: deque[_Request] = deque()
        self._running = 0  # leaders in flight, at most `concurrency`; guarded by _lock
        self._closed = False

    @property
    def queued(self) -> int:
        """Requests waiting behind the runs in flight."""
        with self._lock:
            return len(self._queue)

    def run(
        self,
        x: np.ndarray,
        deadline: float | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """Outputs for the ``n`` clips of ``x``: each output's ``n`` rows, in order."""
        req = _Request(x=x, deadline=deadline, is_active=is_active)
        with self._lock:
            if self._closed:
                raise Unavailable("the model version is being unloaded; retry")
            if self._running < self._concurrency:
                self._running += 1
                req.lead = True
            elif len(self._queue) >= self._max_queue:
                raise ResourceExhausted(f"batch queue full ({self._max_queue} requests waiting); retry later")
            else:
                self._queue.append(req)
        if not req.lead:
            self._wait(req)
            if not req.lead:
                return req.result()
        self._lead(req)
        return req.result()

    def close(self) -> None:
        """Refuse new requests; queued ones are still run by the leaders in flight."""
        with self._lock:
            self._closed = True

    def _wait(self, req: _Request) -> None:
        """Until ``req`` is answered or chosen to lead; DeadlineExceeded if it expires queued."""
        timeout = None if req.deadline is None else max(0.0, req.deadline - time.monotonic())
        if req.done.wait(timeout):
            return
        with self._lock:
            if req in self._queue:
                self._queue.remove(req)
                raise DeadlineExceeded("deadline passed while queued for the model")
        req.done.wait()  # already taken into a batch (or chosen to lead): its answer is coming

    def _lead(self, first: _Request) -> None:
        """Run ``first`` with whatever queued, then pass the lead on (or mark the version idle)."""
        try:
            if self._acquire_slot(first):
                batch = self._take_batch(first)
                try:
                    self._run_batch(batch)
                except BaseException as exc:  # never leave a caller of this batch waiting
                    for req in batch:
                        if not req.answered:
                            req.finish(error=exc)
                    raise
                finally:
                    if self._slots is not None:
                        self._slots.release()
        finally:
            with self._lock:
                if self._queue:
                    nxt = self._queue.popleft()
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._running -= 1

    def _acquire_slot(self, first: _Request) -> bool:
        if self._slots is None:
            return True
        timeout = None if first.deadline is None else max(0.0, first.deadline - time.monotonic())
        if self._slots.acquire(timeout=timeout):
            return True
        first.finish(error=DeadlineExceeded("deadline passed while waiting for the model"))
        return False

    def _take_batch(self, first: _Request) -> list[_Request]:
        batch, rows = [first], first.x.shape[0]
        with self._lock:
            # With several runs at once, a leader takes its share of the queue (rounded up) and
            # leaves the rest to the next run that frees up: batches of equal size, so no caller
            # waits behind a run that took the whole queue while another run got one clip.
            share = -(-(len(self._queue) + 1) // self._concurrency)
            limit = min(self._max_batch, max(share, rows))
            while self._queue and rows + self._queue[0].x.shape[0] <= limit:
                nxt = self._queue.popleft()
                batch.append(nxt)
                rows += nxt.x.shape[0]
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        now = time.monotonic()
        live: list[_Request] = []
        for req in batch:
            if req.is_active is not None and not req.is_active():
                req.finish(error=Cancelled("the call was cancelled before its clip was run"))
            elif req.deadline is not None and now >= req.deadline:
                req.finish(error=DeadlineExceeded("deadline passed before the clip was run"))
            else:
                live.append(req)
        if not live:
            return
        x = live[0].x if len(live) == 1 else np.concatenate([r.x for r in live], axis=0)
        try:
            outs = list(self._run(x))
        except BaseException as exc:  # handed to every caller of this batch
            for req in live:
                req.finish(error=exc)
            return
        if self._on_batch is not None:
            self._on_batch(x.shape[0])
        if len(live) == 1:
            live[0].finish(outs)
            return
        start = 0
        for req in live:
            n = req.x.shape[0]
            req.finish([o[start : start + n] for o in outs])
            start += n

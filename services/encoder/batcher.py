"""Dynamic batching: requests for one model version that arrive close together run as one batch.

One worker thread per model version takes the first queued request, then keeps
collecting until ``max_batch_size`` clips are gathered or ``max_queue_delay``
has passed since that first request arrived, and runs them in one onnxruntime
call. Requests whose deadline has passed, or whose caller went away, are dropped
before the run rather than computed for nobody. The queue is bounded: a full
queue answers RESOURCE_EXHAUSTED at once instead of letting latency grow without
limit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from services.encoder.errors import DeadlineExceeded
from trajlab.errors import ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass
class _Item:
    x: np.ndarray  # (n, C, T, H, W) float32
    deadline: float | None  # time.monotonic() seconds, None = no deadline
    enqueued: float
    future: Future[list[np.ndarray]] = field(default_factory=Future)


_STOP = object()


class DynamicBatcher:
    """Collects requests into batches for ``run_fn`` on one worker thread."""

    def __init__(
        self,
        run_fn: RunFn,
        *,
        max_batch_size: int,
        max_queue_delay_s: float,
        max_queue_size: int,
        name: str,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run_fn
        self._max_batch = max_batch_size
        self._delay = max_queue_delay_s
        self._queue: queue.Queue[_Item | object] = queue.Queue(maxsize=max_queue_size)
        self._on_batch = on_batch
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, x: np.ndarray, deadline: float | None) -> Future[list[np.ndarray]]:
        """Queue one request of ``n`` clips; the future gets its ``n`` rows of every output."""
        item = _Item(x=x, deadline=deadline, enqueued=time.monotonic())
        with self._lock:
            if self._closed:
                raise Unavailable("the model version is being unloaded; retry")
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                raise ResourceExhausted(
                    f"batch queue full ({self._queue.maxsize} requests waiting); retry later"
                ) from None
        return item.future

    def close(self) -> None:
        """Stop the worker after the requests already queued have been answered."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch = [first]
        count = first.x.shape[0]
        stop = False
        flush_at = first.enqueued + self._delay
        while count < self._max_batch:
            remaining = flush_at - time.monotonic()
            try:
                nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                stop = True
                break
            assert isinstance(nxt, _Item)
            if count + nxt.x.shape[0] > self._max_batch:
                # Too big for this batch: run it alone next (rare: requests carry one clip).
                self._run_batch(batch)
                batch, count = [nxt], nxt.x.shape[0]
                flush_at = nxt.enqueued + self._delay
                continue
            batch.append(nxt)
            count += nxt.x.shape[0]
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Item)
            batch, stop = self._collect(first)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Item]) -> None:
        now = time.monotonic()
        live: list[_Item] = []
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                continue  # the caller gave up (deadline or cancellation) while queued
            if item.deadline is not None and now >= item.deadline:
                item.future.set_exception(DeadlineExceeded("deadline passed while queued for a batch"))
                continue
            live.append(item)
        if not live:
            return
        x = live[0].x if len(live) == 1 else np.concatenate([i.x for i in live], axis=0)
        try:
            outs = self._run(x)
        except BaseException as exc:  # handed to every caller of this batch
            for item in live:
                item.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(x.shape[0])
        start = 0
        for item in live:
            n = item.x.shape[0]
            item.future.set_result([o[start : start + n] for o in outs])
            start += n

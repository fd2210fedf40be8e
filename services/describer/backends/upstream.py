"""Outbound calls to language-model servers: a bounded pool and a total deadline per call.

HTTP clients time out on connect and on each read gap, not on the whole body: a
server that sends its headers at once and then one byte a second never trips a read
timeout, and held a gRPC handler for the whole trickle. Two mechanisms bound it:

- ``deadline_transport()`` (an httpx or httpx2 transport) checks a total deadline before the
  request and between every chunk of the body it reads, and raises
  ``httpx.ReadTimeout`` once it passed. The deadline is the caller's (the gRPC
  deadline minus the fallback reserve, capped by the backend's timeout), set by
  :meth:`UpstreamPool.call` for the call it runs. A worker is therefore busy at most
  ``budget`` + one read gap (itself at most ``budget``).
- ``UpstreamPool`` runs each call on one of ``max_calls`` worker threads. The gRPC
  handler waits for the result at most ``budget`` (and stops waiting when its call
  is cancelled), then falls back; a call that cannot get a worker at once is not
  queued but falls back immediately ("busy"). Trickling servers can hold at most
  ``max_calls`` workers, never every gRPC handler: analytic calls and health stay
  answerable.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from types import ModuleType
from typing import Any, TypeVar

import httpx

from services.describer.backends.base import BackendError, FailureKind

T = TypeVar("T")
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("upstream_deadline", default=None)
POLL_SECONDS = 0.05  # how often a waiting handler checks whether its gRPC call is still wanted


@functools.cache
def _transport_class(mod: ModuleType) -> type:
    """DeadlineTransport for an httpx-like module (``httpx``, or ``httpx2`` under the openai SDK)."""

    class DeadlineStream(mod.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, deadline: float) -> None:
            self._inner = inner
            self._deadline = deadline

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                if time.monotonic() > self._deadline:
                    raise mod.ReadTimeout("the response body did not arrive within the call's total deadline")
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class DeadlineTransport(mod.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self._inner = mod.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            deadline = _DEADLINE.get()
            if deadline is not None and time.monotonic() > deadline:
                raise mod.ConnectTimeout("the call's total deadline passed before it was sent")
            resp = self._inner.handle_request(request)
            if deadline is None:
                return resp
            return mod.Response(
                status_code=resp.status_code,
                headers=resp.headers,
                stream=DeadlineStream(resp.stream, deadline),
                extensions=resp.extensions,
                request=request,
            )

        def close(self) -> None:
            self._inner.close()

    return DeadlineTransport


def deadline_transport(mod: ModuleType = httpx) -> Any:
    """A transport of ``mod`` (httpx or httpx2) enforcing the total deadline set by
    :meth:`UpstreamPool.call` before sending and between the chunks of the body."""
    return _transport_class(mod)()


def current_deadline() -> float | None:
    """The total deadline (``time.monotonic()``) of the upstream call running in this thread."""
    return _DEADLINE.get()


class UpstreamPool:
    """At most ``max_calls`` outbound calls at once, each under a total deadline."""

    def __init__(self, max_calls: int) -> None:
        if max_calls < 1:
            raise ValueError(f"upstream pool: max_calls must be >= 1, got {max_calls}")
        self.max_calls = max_calls
        self._slots = threading.BoundedSemaphore(max_calls)
        self._executor = ThreadPoolExecutor(max_workers=max_calls, thread_name_prefix="upstream")
        self._lock = threading.Lock()
        self._busy = 0

    def busy(self) -> int:
        """Workers running a call (abandoned ones included, until their deadline ends them)."""
        with self._lock:
            return self._busy

    def call(self, fn: Callable[[], T], budget: float, *, is_active: Callable[[], bool] | None = None) -> T:
        """``fn()`` on a pool worker, its HTTP under a total deadline of ``budget`` seconds.

        Raises BackendError(BUSY) when every worker is taken, BackendError(TIMEOUT) when no
        answer came within ``budget`` (the worker is abandoned and ends at its deadline),
        BackendError(CANCELLED) when ``is_active()`` turns False; else what ``fn`` raises.
        """
        if not self._slots.acquire(blocking=False):
            raise BackendError(
                FailureKind.BUSY,
                f"all {self.max_calls} upstream call slots are taken (slow upstream answers); not queued",
            )
        deadline = time.monotonic() + budget

        def run() -> T:
            _DEADLINE.set(deadline)  # the worker's own context: reset by the next call's set
            try:
                return fn()
            finally:
                with self._lock:
                    self._busy -= 1
                self._slots.release()

        with self._lock:
            self._busy += 1
        try:
            future: Future[T] = self._executor.submit(run)
        except BaseException:
            with self._lock:
                self._busy -= 1
            self._slots.release()
            raise
        while True:
            left = deadline - time.monotonic()
            try:
                return future.result(timeout=max(0.0, min(left, POLL_SECONDS)))
            except FutureTimeout:
                pass
            if is_active is not None and not is_active():
                raise BackendError(
                    FailureKind.CANCELLED, "the gRPC call was cancelled or its deadline passed"
                )
            if time.monotonic() >= deadline:
                raise BackendError(
                    FailureKind.TIMEOUT,
                    f"no complete answer within {budget:.2f} s "
                    "(total deadline; the upstream call was abandoned)",
                )

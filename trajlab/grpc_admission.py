"""Server-side admission: work RPCs never take the threads health checks need.

grpc's Python server runs every handler, health checks included, on one thread
pool, in arrival order. Handlers that wait (a slow upstream, a long fit) can fill
it, and a health check queued behind them times out: an orchestrator then kills a
process that is merely busy. So:

- the server's thread pool has a thread for every RPC grpc admits
  (``maximum_concurrent_rpcs``) plus a reserve, so no admitted call queues for a
  thread and health, reflection and other exempt services are answered at once;
- unary work RPCs (everything else but streams, which live long and only wait) run
  at most ``running`` at a time; a call beyond that
  waits for a slot, at most until its deadline (and ``max_wait_seconds``), holding
  only an idle thread, and is answered RESOURCE_EXHAUSTED if none frees up.

``threads_for(...)`` gives the pool size, ``AdmissionInterceptor`` the bound.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc

from trajlab.errors import ResourceExhausted

EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
RESERVE_THREADS = 4  # threads beyond the admitted RPCs, for exempt services
UNBOUNDED_QUEUE_FACTOR = 4  # work calls waiting per running slot when grpc admits any number


def threads_for(max_workers: int, max_concurrent_rpcs: int | None) -> int:
    """Thread pool size: one per RPC grpc admits, plus the reserve for exempt services."""
    admitted = max_workers * UNBOUNDED_QUEUE_FACTOR if max_concurrent_rpcs is None else max_concurrent_rpcs
    return max(admitted, max_workers) + RESERVE_THREADS


class Admission:
    """At most ``running`` work calls at once, at most ``capacity`` in handlers (running or waiting)."""

    def __init__(self, running: int, capacity: int, max_wait_seconds: float = 30.0) -> None:
        if running < 1 or capacity < running:
            raise ValueError(f"admission: need 1 <= running <= capacity, got {running}, {capacity}")
        self.running = running
        self.capacity = capacity
        self.max_wait_seconds = max_wait_seconds
        self._slots = threading.BoundedSemaphore(running)
        self._lock = threading.Lock()
        self._inside = 0

    def enter(self, time_remaining: float | None) -> None:
        """Take a running slot or raise ResourceExhausted; pair with :meth:`leave`."""
        with self._lock:
            if self._inside >= self.capacity:
                raise ResourceExhausted(
                    f"server busy: {self._inside} calls in progress or waiting "
                    f"(limit {self.capacity}); retry later"
                )
            self._inside += 1
        wait = self.max_wait_seconds if time_remaining is None else min(time_remaining, self.max_wait_seconds)
        if not self._slots.acquire(timeout=max(wait, 0.0)):
            with self._lock:
                self._inside -= 1
            raise ResourceExhausted(
                f"server busy: no free slot of {self.running} within {max(wait, 0.0):.2f} s; retry later"
            )

    def leave(self) -> None:
        self._slots.release()
        with self._lock:
            self._inside -= 1

    def in_progress(self) -> int:
        with self._lock:
            return self._inside


def _remaining(context: grpc.ServicerContext) -> float | None:
    r = context.time_remaining()
    return None if r is None or r > 1e6 else r  # no deadline: grpc reports a huge number


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Wraps every non-exempt unary handler in :class:`Admission` (enter before, leave after)."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service = handler_call_details.method.strip("/").split("/")[0]
        if service in EXEMPT_SERVICES:
            return handler
        adm = self.admission
        if handler.unary_unary:
            inner: Callable = handler.unary_unary  # type: ignore[type-arg]

            def unary_unary(request, context):  # type: ignore[no-untyped-def]
                adm.enter(_remaining(context))
                try:
                    return inner(request, context)
                finally:
                    adm.leave()

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # streams (the trainer's WatchStatus) are long-lived: only grpc's bound applies

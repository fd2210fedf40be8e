"""The encoder's RPCs on an asyncio gRPC server (``grpc.aio``): what the sync interceptors do, per call.

The event loop receives, decodes and answers every call; the blocking part of a work
call (preprocessing and onnxruntime, in the sync :class:`EncoderServicer` methods) runs
on a thread of a small pool, so the loop stays free to answer health checks and to
receive the calls that the adaptive batcher then gathers into one run. Each call gets,
as on the threaded server (``trajlab.grpc_server``, ``trajlab.grpc_admission``):

- INVALID_ARGUMENT for request bytes that are not a message of the method's type;
- admission: at most ``running`` work calls at once, at most ``capacity`` inside (running
  or waiting, beyond: RESOURCE_EXHAUSTED), a wait bounded by the call's deadline;
- a domain error's status code and message, INTERNAL (logged) for anything else;
- the shared ``trajlab_grpc_requests_total`` / ``trajlab_grpc_request_seconds`` metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import grpc

from trajlab.errors import InvalidArgument, ResourceExhausted, TrajlabError
from trajlab.grpc_server import RPC_LATENCY, RPC_REQUESTS

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0  # a work call waits at most this long for a running slot (as trajlab.grpc_admission)


class AsyncAdmission:
    """At most ``running`` work calls at once, at most ``capacity`` inside; loop thread only."""

    def __init__(self, running: int, capacity: int) -> None:
        if running < 1 or capacity < running:
            raise ValueError(f"admission: need 1 <= running <= capacity, got {running}, {capacity}")
        self.running, self.capacity = running, capacity
        self._slots = asyncio.Semaphore(running)
        self._inside = 0

    async def enter(self, time_remaining: float | None) -> None:
        """Take a running slot or raise ResourceExhausted; pair with :meth:`leave`."""
        if self._inside >= self.capacity:
            raise ResourceExhausted(
                f"server busy: {self._inside} calls in progress or waiting "
                f"(limit {self.capacity}); retry later"
            )
        self._inside += 1
        wait = MAX_WAIT_SECONDS if time_remaining is None else min(time_remaining, MAX_WAIT_SECONDS)
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=max(wait, 0.0))
        except TimeoutError:
            self._inside -= 1
            raise ResourceExhausted(
                f"server busy: no free slot of {self.running} within {max(wait, 0.0):.2f} s; retry later"
            ) from None
        except BaseException:
            self._inside -= 1
            raise

    def leave(self) -> None:
        self._slots.release()
        self._inside -= 1


class CallContext:
    """What the sync servicer asks of its context, safe to ask from the inference thread."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        remaining = context.time_remaining()
        self._deadline = None if remaining is None else time.monotonic() + remaining
        self._ended = threading.Event()
        context.add_done_callback(lambda _ctx: self._ended.set())

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def is_active(self) -> bool:
        return not self._ended.is_set()


class Undecodable:
    """Stands in for request bytes that are not a valid message of the method's type."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A deserializer that returns :class:`Undecodable` instead of raising (grpc would say INTERNAL)."""

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf DecodeError (bad wire format, bad UTF-8, ...)
            return Undecodable(str(exc)[:200])

    return parse


SyncMethod = Callable[[Any, Any], Any]


def work_handler(
    service: str,
    method: str,
    fn: SyncMethod,
    *,
    admission: AsyncAdmission | None,
    executor: Executor | None,
) -> Callable[[Any, grpc.aio.ServicerContext], Any]:
    """An async unary handler running the sync ``fn(request, context)``.

    ``executor`` None runs ``fn`` on the loop (for calls that do not block: ListModels);
    ``admission`` None admits every call.
    """

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code, message, response = grpc.StatusCode.OK, "", None
        try:
            if isinstance(request, Undecodable):
                raise InvalidArgument(f"the request is not a valid {method} request message: {request.error}")
            response = await _call(fn, request, context, admission, executor)
        except TrajlabError as exc:
            code, message = exc.code, str(exc)
        except asyncio.CancelledError:  # the client went away: nobody to answer
            RPC_REQUESTS.labels(service, method, grpc.StatusCode.CANCELLED.name).inc()
            raise
        except Exception:
            log.exception("unhandled error in %s/%s", service, method)
            code, message = grpc.StatusCode.INTERNAL, f"internal error in {method}; see server log"
        RPC_REQUESTS.labels(service, method, code.name).inc()
        RPC_LATENCY.labels(service, method).observe(time.perf_counter() - start)
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)
        return response

    return handle


async def _call(
    fn: SyncMethod,
    request: Any,
    context: grpc.aio.ServicerContext,
    admission: AsyncAdmission | None,
    executor: Executor | None,
) -> Any:
    ctx = CallContext(context)
    if executor is None:
        return fn(request, ctx)
    if admission is not None:
        await admission.enter(ctx.time_remaining())
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(executor, functools.partial(fn, request, ctx))
    if admission is not None:
        # The slot is held until the inference thread is done, even if this call is cancelled.
        fut.add_done_callback(lambda _f: admission.leave())
    return await asyncio.shield(fut)


def guarded(handler: Callable[[Any, Any], Any], what: str) -> Callable[[Any, Any], Any]:
    """grpc's own async unary handlers (health Check): undecodable requests get INVALID_ARGUMENT."""

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {what} request message: {request.error}",
            )
        return await handler(request, context)

    return handle

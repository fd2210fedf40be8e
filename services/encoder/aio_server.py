"""The encoder's gRPC server on asyncio (``grpc.aio``), run by an event loop on a thread of its own.

Same surface as ``trajlab.grpc_server.create_server`` for the encoder: the encoder
service (``services.encoder.aio_handlers``: admission, domain errors, metrics), health
with the ``liveness`` service, reflection v1 and v1alpha, message-size limits,
``maximum_concurrent_rpcs``, TLS and the connection age. :class:`AioServer` looks to the
rest of the process like a started ``grpc.Server`` (``stop(grace).wait()``), and
:class:`LoopHealth` like the threaded health servicer (``set``, ``enter_graceful_shutdown``),
so ``trajlab.service_main`` drains it on SIGTERM as it drains every other service.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.encoder.aio_handlers import AsyncAdmission, guarded, tolerant, work_handler
from services.encoder.servicer import SERVICE_NAME, EncoderServicer
from trajlab.config import TlsSettings
from trajlab.encoder.v1 import encoder_pb2
from trajlab.grpc_reflection import enable_reflection
from trajlab.grpc_server import LIVENESS_SERVICE, _connection_age_options, server_credentials

log = logging.getLogger(__name__)
T = TypeVar("T")
# Calls that do not block (no inference): answered on the event loop itself.
INLINE_METHODS = frozenset({"ListModels"})


class EventLoopThread:
    """An asyncio event loop running on a daemon thread; ``run(coro)`` waits for a result."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


class LoopHealth:
    """The asyncio health servicer, driven from any thread (the model store's watcher, SIGTERM)."""

    def __init__(self, runner: EventLoopThread) -> None:
        self._runner = runner
        self.servicer = health_async.HealthServicer()

    def set(self, service: str, status: int) -> None:
        self._runner.run(self.servicer.set(service, status))  # type: ignore[arg-type]

    def enter_graceful_shutdown(self) -> None:
        self._runner.run(self.servicer.enter_graceful_shutdown())


class _Stopping:
    def __init__(self, done: threading.Event) -> None:
        self._done = done

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class AioServer:
    """A started ``grpc.aio`` server seen from synchronous code."""

    def __init__(
        self, runner: EventLoopThread, server: grpc.aio.Server, executor: ThreadPoolExecutor | None
    ) -> None:
        self._runner, self._server, self._executor = runner, server, executor
        self._stopped = threading.Event()

    def stop(self, grace: float | None) -> _Stopping:
        """Refuse new calls, give in-flight ones ``grace`` seconds, then stop the loop's thread."""

        def finish(_f: Any) -> None:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            self._runner.close()
            self._stopped.set()

        if not self._stopped.is_set() and not self._runner.loop.is_closed():
            fut = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._runner.loop)
            fut.add_done_callback(lambda f: threading.Thread(target=finish, args=(f,), daemon=True).start())
        return _Stopping(self._stopped)


def create_aio_server(
    address: str,
    servicer: EncoderServicer,
    *,
    runner: EventLoopThread,
    health_servicer: LoopHealth,
    serving: bool,
    max_workers: int,
    max_concurrent_rpcs: int | None,
    max_message_bytes: int,
    inference: str = "thread",
    tls: TlsSettings | None = None,
    max_connection_age_seconds: float | None = None,
    max_connection_age_grace_seconds: float = 30.0,
) -> tuple[AioServer, int]:
    """Build and start the encoder's asyncio server on ``address``; returns it and its port.

    ``max_workers`` work calls run at once, each on a thread of a pool of that size
    (``inference="loop"`` runs them on the event loop instead, one at a time);
    ``max_concurrent_rpcs`` calls may be in the server at all (beyond: RESOURCE_EXHAUSTED).
    """
    executor = None if inference == "loop" else ThreadPoolExecutor(max_workers, thread_name_prefix="encoder")

    async def build() -> tuple[grpc.aio.Server, int]:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
            *_connection_age_options(max_connection_age_seconds, max_connection_age_grace_seconds),
        ]
        server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
        capacity = max_concurrent_rpcs if max_concurrent_rpcs is not None else max_workers * 4
        admission = AsyncAdmission(max_workers, max(capacity, max_workers))
        server.add_generic_rpc_handlers((_encoder_handlers(servicer, admission, executor),))
        server.add_generic_rpc_handlers((_health_handlers(health_servicer.servicer),))
        enable_reflection([SERVICE_NAME, health.SERVICE_NAME], server, asyncio_server=True)
        if tls is not None and tls.enabled:
            port = server.add_secure_port(address, server_credentials(tls))
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"could not bind gRPC server to {address}")
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await health_servicer.servicer.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        for name in (SERVICE_NAME, ""):
            await health_servicer.servicer.set(name, status)
        await server.start()
        return server, port

    server, port = runner.run(build())
    log.info("gRPC server listening on %s (port %d), asyncio", address, port)
    return AioServer(runner, server, executor), port


def _encoder_handlers(
    servicer: EncoderServicer, admission: AsyncAdmission, executor: ThreadPoolExecutor | None
) -> grpc.GenericRpcHandler:
    service = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"]
    handlers = {}
    for m in service.methods:
        request_cls = _message_class(m.input_type.name)
        inline = m.name in INLINE_METHODS or executor is None
        fn = work_handler(
            service.name,
            m.name,
            getattr(servicer, m.name),
            admission=None if m.name in INLINE_METHODS else admission,
            executor=None if inline else executor,
        )
        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=tolerant(request_cls.FromString),
            response_serializer=lambda msg: msg.SerializeToString(),
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _message_class(name: str) -> Any:
    return getattr(encoder_pb2, name)


def _health_handlers(hs: health_async.HealthServicer) -> grpc.GenericRpcHandler:
    req = health_pb2.HealthCheckRequest
    resp = health_pb2.HealthCheckResponse
    handlers = {
        "Check": grpc.unary_unary_rpc_method_handler(
            guarded(hs.Check, "health check"),
            request_deserializer=tolerant(req.FromString),
            response_serializer=resp.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            hs.Watch, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
        ),
    }
    assert health_pb2_grpc  # the generated module registers the service's descriptor
    return grpc.method_handlers_generic_handler(health.SERVICE_NAME, handlers)

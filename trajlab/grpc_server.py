"""gRPC server bootstrap shared by every service.

``create_server(address, ...) -> (server, port)`` builds a server with the
standard health service, reflection (v1 and v1alpha), admission that keeps health
answerable under load, an interceptor that maps domain errors to
status codes and records Prometheus metrics, explicit message-size limits and a
bound on concurrent RPCs. ``serve(...)`` runs it until SIGTERM or SIGINT, then
drains in-flight calls for the grace period. Tests bind port 0 and get the real
port back.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import Counter, Histogram, start_http_server

from trajlab.config import TlsSettings
from trajlab.errors import InvalidArgument, TrajlabError
from trajlab.grpc_admission import RESERVE_THREADS, Admission, AdmissionInterceptor, threads_for
from trajlab.grpc_reflection import enable_reflection

log = logging.getLogger(__name__)

RPC_REQUESTS = Counter(
    "trajlab_grpc_requests_total",
    "gRPC calls handled, by service, method and status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "trajlab_grpc_request_seconds",
    "gRPC handler latency in seconds, by service and method.",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

Registration = Callable[[grpc.Server], None]
# A health "service" that is SERVING while the process answers at all: what a liveness probe
# asks (Kubernetes: grpc probe with service "liveness"). Readiness asks the real service name,
# which can be NOT_SERVING for long (the encoder, until a model is published) without a restart.
LIVENESS_SERVICE = "liveness"


def _split_method(full: str) -> tuple[str, str]:
    # "/trajlab.encoder.v1.EncoderService/Classify" -> ("EncoderService", "Classify")
    parts = full.strip("/").split("/")
    service = parts[0].rsplit(".", 1)[-1] if parts else "unknown"
    method = parts[1] if len(parts) > 1 else "unknown"
    return service, method


class ErrorAndMetricsInterceptor(grpc.ServerInterceptor):
    """Turns TrajlabError into its status code; counts and times every call.

    One place for the exception -> status mapping (as in text-generation-inference's
    interceptor). An unexpected exception is logged with its traceback and answered
    INTERNAL without leaking internals to the client.
    """

    def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split_method(handler_call_details.method)
        if service in ("Health", "ServerReflection"):
            return _guard_undecodable(handler)

        def finish(context: grpc.ServicerContext, start: float) -> None:
            code = context.code() if hasattr(context, "code") else None
            name = code.name if isinstance(code, grpc.StatusCode) else "OK"
            RPC_REQUESTS.labels(service, method, name).inc()
            RPC_LATENCY.labels(service, method).observe(time.perf_counter() - start)

        def fail(context: grpc.ServicerContext, exc: BaseException, start: float) -> None:
            if isinstance(exc, TrajlabError):
                code, msg = exc.code, str(exc)
            else:
                log.exception("unhandled error in %s/%s", service, method)
                code, msg = grpc.StatusCode.INTERNAL, f"internal error in {method}; see server log"
            RPC_REQUESTS.labels(service, method, code.name).inc()
            RPC_LATENCY.labels(service, method).observe(time.perf_counter() - start)
            context.abort(code, msg)

        if handler.unary_unary:
            inner = handler.unary_unary

            def unary_unary(request, context):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                if isinstance(request, _Undecodable):
                    fail(context, request.as_error(method), start)
                try:
                    resp = inner(request, context)
                except Exception as exc:
                    if _is_abort(exc):
                        finish(context, start)
                        raise
                    fail(context, exc, start)
                finish(context, start)
                return resp

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_s = handler.unary_stream

            def unary_stream(request, context):  # type: ignore[no-untyped-def]
                start = time.perf_counter()
                if isinstance(request, _Undecodable):
                    fail(context, request.as_error(method), start)
                try:
                    yield from inner_s(request, context)
                except Exception as exc:
                    if _is_abort(exc):
                        finish(context, start)
                        raise
                    fail(context, exc, start)
                finish(context, start)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message of the method's type.

    grpc answers a deserializer that raises with INTERNAL ("Exception deserializing
    request!") and logs a traceback per call; a hostile or broken client would then
    look like a server bug. The interceptor answers this INVALID_ARGUMENT instead.
    """

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error

    def as_error(self, method: str) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid {method} request message: {self.error}")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # protobuf DecodeError (bad wire format, bad UTF-8, ...)
            return _Undecodable(str(exc)[:200])

    return parse


def _guard_undecodable(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """grpc's own unary services (health): undecodable requests get INVALID_ARGUMENT, no metrics."""
    if not handler.unary_unary:
        return handler
    inner = handler.unary_unary

    def unary_unary(request, context):  # type: ignore[no-untyped-def]
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(request.as_error("health check")))
        return inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        unary_unary,
        request_deserializer=_tolerant(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises a bare Exception subclass internal to grpc.
    return type(exc).__name__ == "_AbortionError" or (
        type(exc) is Exception and not exc.args
    )


def create_server(
    address: str,
    *,
    registrations: Sequence[Registration] = (),
    service_names: Iterable[str] = (),
    health_servicer: health.HealthServicer | None = None,
    serving: bool = True,
    max_workers: int = 8,
    max_concurrent_rpcs: int | None = 64,
    max_message_bytes: int = 16 * 1024 * 1024,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    tls: TlsSettings | None = None,
    max_connection_age_seconds: float | None = None,
    max_connection_age_grace_seconds: float = 30.0,
) -> tuple[grpc.Server, int]:
    """Build and start a gRPC server on ``address`` ("host:port"; port 0 = any free port).

    ``registrations`` are the generated ``add_XServicer_to_server`` calls bound to
    their servicers; ``service_names`` are the full service names, registered for
    reflection and health. With ``serving=False`` health says NOT_SERVING until the
    caller flips it through ``health_servicer`` (e.g. the encoder, until a model loads).
    ``max_workers`` unary calls run at once; further ones wait for a slot until their
    deadline (``trajlab.grpc_admission``), while health and reflection have threads of
    their own and never wait behind them.
    With ``tls`` holding a certificate and key the port speaks TLS only; with its
    ``client_ca_file`` too, clients must present a certificate that CA signed (mutual TLS).
    ``max_connection_age_seconds`` closes each connection (GOAWAY) after that long, so
    round-robin clients re-resolve their target and spread over replicas added since.
    """
    from concurrent import futures

    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *_connection_age_options(max_connection_age_seconds, max_connection_age_grace_seconds),
    ]
    threads = threads_for(max_workers, max_concurrent_rpcs)
    admission = Admission(max_workers, threads - RESERVE_THREADS)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
        interceptors=[ErrorAndMetricsInterceptor(), AdmissionInterceptor(admission), *interceptors],
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    for register in registrations:
        register(server)
    hs = health_servicer or health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    names = list(service_names)
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    hs.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    for name in names:
        hs.set(name, status)
    hs.set("", status)
    enable_reflection([*names, health.SERVICE_NAME], server)
    if tls is not None and tls.enabled:
        port = server.add_secure_port(address, server_credentials(tls))
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    server.start()
    log.info("gRPC server listening on %s (port %d)", address, port)
    if tls is not None and tls.enabled:
        log.info("gRPC TLS on: certificate %s, client certificates %s", tls.cert_file,
                 f"required (CA {tls.client_ca_file})" if tls.client_ca_file else "not required")
    return server, port


def _connection_age_options(age_seconds: float | None, grace_seconds: float) -> list[tuple[str, int]]:
    """GOAWAY after ``age_seconds`` (None = never), in-flight calls get ``grace_seconds``."""
    if age_seconds is None:
        return []
    return [
        ("grpc.max_connection_age_ms", int(age_seconds * 1000)),
        ("grpc.max_connection_age_grace_ms", int(grace_seconds * 1000)),
    ]


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """gRPC server credentials from PEM files; mutual TLS when ``tls.client_ca_file`` is set."""
    assert tls.cert_file is not None and tls.key_file is not None
    ca = tls.client_ca_file.read_bytes() if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def set_serving(hs: health.HealthServicer, names: Iterable[str], serving: bool) -> None:
    """Flip the overall and per-service health status."""
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in [*names, ""]:
        hs.set(name, status)


def start_metrics_server(host: str, port: int) -> int | None:
    """Expose Prometheus /metrics on host:port; returns the bound port (None if disabled)."""
    if port < 0:
        return None
    srv, _thread = start_http_server(port, addr=host)
    bound = srv.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return int(bound)


def serve_until_signal(
    server: grpc.Server,
    *,
    grace_seconds: float,
    health_servicer: health.HealthServicer | None = None,
    on_stop: Callable[[], Any] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Block until SIGTERM/SIGINT (or ``stop_event`` is set), then stop accepting calls and drain.

    Health flips to NOT_SERVING first so load balancers stop routing here; calls in
    flight get ``grace_seconds`` to finish.
    """
    stop_event = stop_event if stop_event is not None else threading.Event()

    def _handler(signum: int, _frame: Any) -> None:
        log.info("received %s: draining for up to %.1f s", signal.Signals(signum).name, grace_seconds)
        stop_event.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    stop_event.wait()
    if health_servicer is not None:
        health_servicer.enter_graceful_shutdown()
    if on_stop is not None:
        on_stop()
    server.stop(grace_seconds).wait()
    log.info("server stopped")

"""Waiting for a gRPC server's health check (grpc.health.v1) to answer SERVING.

One loop for every caller: the encoder's and trainer's clients (``wait_until_serving``)
and ``trajlab run`` while it starts its services. Each check has its own short
deadline, so a server that accepts connections but hangs is polled again rather than
waited on for the whole ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc


def wait_until_serving(
    channel: grpc.Channel,
    *,
    what: str,
    service: str = "",
    timeout: float = 30.0,
    poll_seconds: float = 0.2,
    check_timeout: float = 1.0,
    on_poll: Callable[[], None] | None = None,
) -> None:
    """Block until ``service``'s health ("" = the whole server) is SERVING.

    ``on_poll`` runs before each check (e.g. to fail fast when the server's process died).
    Raises TimeoutError naming ``what`` (e.g. "encoder at 127.0.0.1:50051") and the last answer.
    """
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    end = time.monotonic() + timeout
    last = "no answer"
    while True:
        if on_poll is not None:
            on_poll()
        try:
            status = stub.Check(request, timeout=check_timeout).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as exc:
            last = f"{exc.code().name}: {exc.details()}"
        if time.monotonic() >= end:
            raise TimeoutError(f"{what} not SERVING after {timeout:.0f} s (last: {last})")
        time.sleep(poll_seconds)

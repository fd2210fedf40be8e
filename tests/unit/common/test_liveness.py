"""Liveness vs readiness: a server that is up but not ready (the encoder before any model is
published) must pass a liveness probe, or Kubernetes restarts it in a loop; a draining server
fails both."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from trajlab.grpc_server import LIVENESS_SERVICE, create_server, set_serving

SERVICE = "trajlab.encoder.v1.EncoderService"


def _status(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        req = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(ch).Check(req, timeout=5).status


def test_alive_while_not_ready_and_neither_when_draining() -> None:
    hs = health.HealthServicer(experimental_non_blocking=True)
    server, port = create_server("127.0.0.1:0", service_names=[SERVICE], health_servicer=hs, serving=False)
    try:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert _status(port, SERVICE) == not_serving  # readiness: no traffic yet
        assert _status(port, LIVENESS_SERVICE) == serving  # liveness: do not restart it
        set_serving(hs, [SERVICE], True)
        set_serving(hs, [SERVICE], False)
        assert _status(port, LIVENESS_SERVICE) == serving  # readiness flips never touch liveness
        hs.enter_graceful_shutdown()
        assert _status(port, SERVICE) == _status(port, LIVENESS_SERVICE) == not_serving
    finally:
        server.stop(0)

from __future__ import annotations

import urllib.request

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from trajlab.errors import InvalidClip
from trajlab.grpc_server import create_server, set_serving, start_metrics_server
from trajlab.reporter.v1 import reporter_pb2, reporter_pb2_grpc

SERVICE = reporter_pb2.DESCRIPTOR.services_by_name["ReporterService"].full_name


class _Failing(reporter_pb2_grpc.ReporterServiceServicer):
    def BuildReport(self, request, context):
        if request.describe_samples == 1:
            raise InvalidClip("clip.frames must be > 0, got 0")
        if request.describe_samples == 2:
            raise RuntimeError("secret internals")
        return reporter_pb2.BuildReportResponse(winner="b1")


@pytest.fixture
def server():
    hs = health.HealthServicer()
    srv, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(_Failing(), s)],
        service_names=[SERVICE],
        health_servicer=hs,
        serving=False,
    )
    yield srv, port, hs
    srv.stop(0)


def test_health_follows_readiness(server) -> None:
    _srv, port, hs = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        req = health_pb2.HealthCheckRequest(service=SERVICE)
        assert stub.Check(req).status == health_pb2.HealthCheckResponse.NOT_SERVING
        set_serving(hs, [SERVICE], True)
        assert stub.Check(req).status == health_pb2.HealthCheckResponse.SERVING
        assert stub.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING


def test_domain_errors_map_to_status_codes_and_bugs_do_not_leak(server) -> None:
    _srv, port, _hs = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reporter_pb2_grpc.ReporterServiceStub(ch)
        assert stub.BuildReport(reporter_pb2.BuildReportRequest()).winner == "b1"
        with pytest.raises(grpc.RpcError) as e:
            stub.BuildReport(reporter_pb2.BuildReportRequest(describe_samples=1))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "clip.frames" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.BuildReport(reporter_pb2.BuildReportRequest(describe_samples=2))
        assert e.value.code() == grpc.StatusCode.INTERNAL
        assert "secret" not in e.value.details()


def test_metrics_endpoint_counts_calls_by_code(server) -> None:
    _srv, port, _hs = server
    mport = start_metrics_server("127.0.0.1", 0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reporter_pb2_grpc.ReporterServiceStub(ch)
        with pytest.raises(grpc.RpcError):
            stub.BuildReport(reporter_pb2.BuildReportRequest(describe_samples=1))
    body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5).read().decode()
    assert 'trajlab_grpc_requests_total{code="INVALID_ARGUMENT",method="BuildReport",service="ReporterService"}' in body


def test_reflection_lists_the_service(server) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _srv, port, _hs = server
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {s.name for s in resp.list_services_response.service}
    assert SERVICE in names and "grpc.health.v1.Health" in names

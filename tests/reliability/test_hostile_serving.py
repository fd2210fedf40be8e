"""The serving stack under hostile use: reflection v1, and health that never waits behind work.

Issue 23: only ``grpc.reflection.v1alpha`` was served (``buf curl --reflect-protocol
grpc-v1`` failed), and handlers stuck on a slow dependency filled grpc's one thread
pool, so ``grpc.health.v1.Health/Check`` timed out behind them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.grpc_server import create_server

V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


class _Blocking(describer_pb2_grpc.DescriberServiceServicer):
    """Describe waits on an event (a stuck dependency); ListBackends answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def Describe(self, request, context):  # type: ignore[no-untyped-def]
        self.entered.release()
        self.release.wait(30)
        return describer_pb2.DescribeResponse(description="late")

    def ListBackends(self, request, context):  # type: ignore[no-untyped-def]
        return describer_pb2.ListBackendsResponse()


@pytest.fixture
def served() -> Iterator[tuple[grpc.Channel, _Blocking]]:
    svc = _Blocking()
    name = describer_pb2.DESCRIPTOR.services_by_name["DescriberService"].full_name
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(svc, s)],
        service_names=[name],
        max_workers=4,
        max_concurrent_rpcs=16,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, svc
    finally:
        svc.release.set()
        channel.close()
        server.stop(0).wait()


def _reflect(channel: grpc.Channel, method: str, request: reflection_pb2.ServerReflectionRequest) -> bytes:
    call = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
    (answer,) = list(call(iter([request.SerializeToString()]), timeout=10))
    return answer


def test_reflection_v1_lists_services_and_serves_their_files(served: tuple[grpc.Channel, _Blocking]) -> None:
    channel, _ = served
    raw = _reflect(channel, V1_METHOD, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {
        s.name for s in reflection_pb2.ServerReflectionResponse.FromString(raw).list_services_response.service
    }
    assert "trajlab.describer.v1.DescriberService" in names
    assert "grpc.reflection.v1.ServerReflection" in names
    assert "grpc.health.v1.Health" in names
    for symbol in ("trajlab.describer.v1.DescriberService", "grpc.reflection.v1.ServerReflection"):
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        resp = reflection_pb2.ServerReflectionResponse.FromString(_reflect(channel, V1_METHOD, req))
        assert not resp.HasField("error_response"), resp.error_response.error_message
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto
        ]
        assert any(symbol.rsplit(".", 1)[1] in {s.name for s in f.service} for f in files)
    # The older protocol still answers.
    raw = _reflect(
        channel,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        reflection_pb2.ServerReflectionRequest(list_services=""),
    )
    assert reflection_pb2.ServerReflectionResponse.FromString(raw).list_services_response.service


def test_health_and_quick_calls_answer_while_every_work_slot_is_stuck(
    served: tuple[grpc.Channel, _Blocking],
) -> None:
    channel, svc = served
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    stuck = [stub.Describe.future(describer_pb2.DescribeRequest(), timeout=30) for _ in range(8)]
    for _ in range(4):  # max_workers=4: every work slot is held
        assert svc.entered.acquire(timeout=10)
    health = health_pb2_grpc.HealthStub(channel)
    for _ in range(5):
        resp = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    # A work call that cannot get a slot before its deadline is refused, not left hanging.
    with pytest.raises(grpc.RpcError) as err:
        stub.ListBackends(describer_pb2.ListBackendsRequest(), timeout=0.5)
    assert err.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)
    svc.release.set()
    assert all(f.result().description == "late" for f in stuck)
    assert stub.ListBackends(describer_pb2.ListBackendsRequest(), timeout=5) is not None

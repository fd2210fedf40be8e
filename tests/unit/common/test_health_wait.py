"""``trajlab.clients.health.wait_until_serving``: the one health-check wait, against a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from trajlab.clients.health import wait_until_serving

SERVICE = "trajlab.test.v1.Thing"


@pytest.fixture
def server() -> Iterator[tuple[str, health.HealthServicer]]:
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}", servicer
    srv.stop(None)


def test_returns_once_the_service_turns_serving(server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = server
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    polls = []

    def poll() -> None:  # flips to SERVING on the third check: the wait must see it
        polls.append(1)
        if len(polls) == 3:
            servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)

    with grpc.insecure_channel(target) as ch:
        wait_until_serving(ch, what="thing", service=SERVICE, timeout=60, poll_seconds=0.01, on_poll=poll)
    assert len(polls) == 3


def test_timeout_names_what_and_the_last_answer(server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = server
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    with grpc.insecure_channel(target) as ch, pytest.raises(TimeoutError) as err:
        wait_until_serving(ch, what=f"thing at {target}", service=SERVICE, timeout=0.2, poll_seconds=0.05)
    assert f"thing at {target} not SERVING" in str(err.value) and "last: NOT_SERVING" in str(err.value)


def test_an_unknown_service_or_no_server_is_the_last_answer(
    server: tuple[str, health.HealthServicer],
) -> None:
    target, _ = server
    with grpc.insecure_channel(target) as ch, pytest.raises(TimeoutError, match="NOT_FOUND"):
        wait_until_serving(ch, what="thing", service="nosuch", timeout=0.1, poll_seconds=0.05)
    with grpc.insecure_channel("127.0.0.1:1") as ch, pytest.raises(TimeoutError, match="UNAVAILABLE"):
        wait_until_serving(ch, what="thing", timeout=0.1, poll_seconds=0.05)


def test_on_poll_failing_stops_the_wait(server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    def child_died() -> None:
        raise RuntimeError("the server's process exited")

    with grpc.insecure_channel(target) as ch, pytest.raises(RuntimeError, match="exited"):
        wait_until_serving(ch, what="thing", timeout=60, on_poll=child_died)

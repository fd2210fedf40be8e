"""The describer against hostile clients and a hostile language-model server (issue 23).

A real gRPC server in the test process (``create_server`` as the service uses it),
a fake OpenAI-compatible server that sends its headers at once and then the body one
byte a second, and requests at and beyond the documented bounds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import MAX_COORDINATE, MAX_POINTS, MAX_TIME, SERVICE_NAME, DescriberServicer
from services.describer.settings import DescriberSettings
from tests.unit.describer.kit import answer_json, make_trajectory, openai_ok
from trajlab.common.v1 import common_pb2
from trajlab.config import load_settings
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.equations import score_equations
from trajlab.grpc_server import create_server

KEY = "sk-test-hostile"


class Trickle:
    """OpenAI-compatible server: a valid answer, headers at once, body one byte per ``gap`` s."""

    def __init__(self, gap: float = 1.0) -> None:
        body = json.dumps(openai_ok(answer_json()).body).encode()
        self.started = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    outer.started += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(gap)
                except OSError:
                    pass  # the describer gave up

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def trickle() -> Iterator[Trickle]:
    srv = Trickle()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def channel(trickle: Trickle) -> Iterator[grpc.Channel]:
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)
    settings = load_settings(
        DescriberSettings,
        openai_base_url=trickle.url,
        openai_api_key=KEY,
        openai_model="gpt-4o",
        openai_models=["gpt-4o-mini"],
        openai_timeout_seconds=30.0,
        port=0,
    )
    registry = BackendRegistry(settings, {"b1": "analytic"})
    registry.statuses()  # as the service does at start: creates the backends (imports the SDK)
    servicer = DescriberServicer(Router(registry))
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        max_workers=settings.max_workers,
    )
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)])
    yield ch
    ch.close()
    server.stop(0)
    mp.undo()


def _request(
    times: np.ndarray | None = None, points: np.ndarray | None = None, **kw: Any
) -> describer_pb2.DescribeRequest:
    tr = make_trajectory("linear", 0)
    t = tr.observed_times if times is None else times
    p = tr.observed if points is None else points
    return describer_pb2.DescribeRequest(
        observed=[common_pb2.Point3(x=a, y=b, z=c) for a, b, c in p], observed_times=list(t), **kw
    )


def _calls(result: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "trajlab_describer_backend_calls_total", {"backend": "openai:gpt-4o", "result": result}
        )
        or 0.0
    )


def test_a_trickling_upstream_falls_back_at_the_deadline_and_never_blocks_health(
    channel: grpc.Channel, trickle: Trickle
) -> None:
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    timeouts_before, ok_before = _calls("timeout"), _calls("ok")
    slow = [stub.Describe.future(_request(backend="openai"), timeout=4.0) for _ in range(10)]
    deadline = time.monotonic() + 10
    while trickle.started < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trickle.started >= 4, "the trickling server was never called"
    # Meanwhile: health and an analytic Describe answer within short deadlines.
    health = health_pb2_grpc.HealthStub(channel)
    assert (
        health.Check(health_pb2.HealthCheckRequest(), timeout=1.0).status
        == health_pb2.HealthCheckResponse.SERVING
    )
    quick = stub.Describe(_request(backend="analytic"), timeout=2.0)
    assert quick.backend_used == "analytic" and not quick.fallback_used
    answers = [f.result() for f in slow]  # every one answered OK within its 4 s deadline
    assert all(a.fallback_used and a.backend_used == "analytic" for a in answers)
    reasons = {a.fallback_reason.split(":")[0] for a in answers}
    assert reasons <= {"timeout", "busy"} and "timeout" in reasons, reasons
    assert any("busy" in a.fallback_reason for a in answers), "the upstream pool was not bounded"
    assert _calls("timeout") > timeouts_before and _calls("ok") == ok_before  # counted as timeouts


def _rpc_count(code: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "trajlab_grpc_requests_total", {"service": "DescriberService", "method": "Describe", "code": code}
        )
        or 0.0
    )


def test_an_expired_fit_stops_on_the_server(channel: grpc.Channel) -> None:
    # The largest request allowed (its fit takes >100 ms here); a 50 ms deadline expires during
    # the fit, and the server must stop there (DEADLINE_EXCEEDED on its side), not finish a fit
    # nobody reads. (A 1 ms deadline could expire before gRPC hands the call to the handler at
    # all, and then no handler runs or counts it: that tests gRPC, not the describer.)
    n = MAX_POINTS
    t = np.arange(n) / 8.0
    p = np.stack([np.cos(t), np.sin(t), 0.1 * t], axis=1)
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    expired_before, ok_before = _rpc_count("DEADLINE_EXCEEDED"), _rpc_count("OK")
    with pytest.raises(grpc.RpcError) as err:
        stub.Describe(_request(t, p), timeout=0.05)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until = time.monotonic() + 60
    while _rpc_count("DEADLINE_EXCEEDED") == expired_before and time.monotonic() < wait_until:
        time.sleep(0.05)
    assert _rpc_count("DEADLINE_EXCEEDED") == expired_before + 1
    assert _rpc_count("OK") == ok_before  # the fit was not carried to the end
    ok = stub.Describe(_request(t, p), timeout=60)  # with time, the same request is answered
    assert ok.backend_used == "analytic" and ok.equations.x


def test_a_cancelled_call_stops_the_fit_between_stages() -> None:
    from services.describer.backends.base import Trajectory
    from trajlab.errors import CallAbandoned

    tr = make_trajectory("helical", 1)
    router = Router(BackendRegistry(load_settings(DescriberSettings), {}))
    asked: list[bool] = []

    def is_active() -> bool:
        asked.append(True)
        return len(asked) < 2  # the client cancels after the first stage

    with pytest.raises(CallAbandoned):
        router.describe(Trajectory(tr.observed, tr.observed_times), is_active=is_active)
    assert len(asked) == 2


def test_more_points_than_the_limit_are_refused_naming_it(channel: grpc.Channel) -> None:
    n = MAX_POINTS + 1
    t = np.arange(n) / 8.0
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Describe(_request(t, np.zeros((n, 3)) + t[:, None]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_POINTS} points" in err.value.details()


@pytest.mark.parametrize(
    ("field", "value"),
    [("coordinate", 1e160), ("coordinate", 1e158), ("coordinate", -2e6), ("time", 1e155), ("time", -1e12)],
)
def test_huge_finite_numbers_are_refused_with_the_range(
    channel: grpc.Channel, field: str, value: float
) -> None:
    tr = make_trajectory("linear", 0)
    t, p = tr.observed_times.copy(), tr.observed.copy()
    if field == "coordinate":
        p[3, 1] = value
    else:
        t = t + value if value > 0 else t - abs(value) + 0
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Describe(_request(t, p), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    limit = MAX_COORDINATE if field == "coordinate" else MAX_TIME
    assert f"{limit:g}" in err.value.details()


@pytest.mark.parametrize("t0", [1.7962300009e9, -3e9, MAX_TIME - 10.0])
@pytest.mark.parametrize("kind", ["linear", "parabolic", "circular", "helical"])
def test_unix_timestamp_times_give_equations_the_service_parses(
    channel: grpc.Channel, t0: float, kind: str
) -> None:
    tr = make_trajectory(kind, 3)
    t = tr.times + t0
    p = tr.positions * 1000.0  # millimetres: larger coefficients too
    req = _request(t[:16], p[:16])
    req.truth.extend(common_pb2.Point3(x=a, y=b, z=c) for a, b, c in p)
    req.truth_times.extend(t.tolist())
    resp = describer_pb2_grpc.DescriberServiceStub(channel).Describe(req, timeout=30)
    assert resp.score.parsed, resp.score.error
    assert resp.score.accurate, (resp.equations, resp.score.normalized_rmse)
    again = score_equations((resp.equations.x, resp.equations.y, resp.equations.z), t, p)
    assert again.parsed and again.accurate


def test_invented_openai_models_are_not_found_and_never_lock_out_real_ones(channel: grpc.Channel) -> None:
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    for i in range(20):
        with pytest.raises(grpc.RpcError) as err:
            stub.Describe(_request(backend=f"openai:invented-{i}"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "gpt-4o-mini" in err.value.details()  # says which models are enabled
    # The operator's models still resolve (and fall back: the fake server trickles).
    resp = stub.Describe(_request(backend="openai:gpt-4o-mini"), timeout=0.6)
    assert resp.backend_requested == "openai:gpt-4o-mini"


@pytest.mark.parametrize("field", ["backend", "branch"])
def test_huge_client_strings_come_back_shortened(channel: grpc.Channel, field: str) -> None:
    huge = "x" * (4 << 20)
    stub = describer_pb2_grpc.DescriberServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.Describe(_request(**{field: huge}), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()[:200]
    assert len(err.value.details()) < 1000 and "4194304 characters" in err.value.details()

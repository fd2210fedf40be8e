"""Routing, the circuit breaker, and what the metrics say about fallbacks."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.describer.backends.base import Trajectory
from services.describer.breaker import BreakerState, CircuitBreaker
from tests.unit.describer.conftest import FakeClock, RouterFactory
from tests.unit.describer.kit import TGI_500, answer_json, make_trajectory, scripted, tgi_ok
from trajlab.errors import NotFound


def test_breaker_opens_after_n_failures_probes_once_and_recovers() -> None:
    clock = FakeClock()
    br = CircuitBreaker(3, 10.0, clock)
    for _ in range(2):
        assert br.allow()
        br.record_failure()
    assert br.state() == BreakerState.CLOSED
    br.record_failure()
    assert br.state() == BreakerState.OPEN and not br.allow()
    assert br.seconds_until_probe() == pytest.approx(10.0)
    clock.now += 10.0
    assert br.state() == BreakerState.HALF_OPEN
    assert br.allow() and not br.allow()  # exactly one probe at a time
    br.record_failure()  # the probe failed: open again, pause restarts
    assert br.state() == BreakerState.OPEN and br.seconds_until_probe() == pytest.approx(10.0)
    clock.now += 10.0
    assert br.allow()
    br.record_success()
    assert br.state() == BreakerState.CLOSED and br.consecutive_failures == 0


def test_success_resets_the_failure_count() -> None:
    br = CircuitBreaker(2, 1.0, FakeClock())
    br.record_failure()
    br.record_success()
    br.record_failure()
    assert br.state() == BreakerState.CLOSED


def test_dead_backend_opens_its_circuit_then_recovers(
    make_router: RouterFactory, clock: FakeClock, trajectory: Trajectory
) -> None:
    with scripted(TGI_500) as srv:
        router = make_router(tgi_endpoints={"mistral": srv.url}, breaker_failures=2, retries=0)
        for _ in range(2):
            assert router.describe(trajectory, branch="b3").fallback_kind == "server_error"
        assert len(srv.requests) == 2
        res = router.describe(trajectory, branch="b3")
        assert res.fallback_kind == "circuit_open" and "next probe in 30.0 s" in res.fallback_reason
        assert len(srv.requests) == 2  # not called while open: no time lost on a dead backend
        health = {s.name: s for s in router.registry.statuses()}["tgi:mistral"]
        assert health.health == "circuit_open" and health.consecutive_failures == 2
        # The container comes back; after the pause one probe goes through and closes the circuit.
        srv.script(tgi_ok(answer_json()))
        clock.now += 30.0
        assert {s.name: s for s in router.registry.statuses()}["tgi:mistral"].health == "probing"
        res = router.describe(trajectory, branch="b3")
        assert not res.fallback_used and res.backend_used == "tgi:mistral"
        assert {s.name: s for s in router.registry.statuses()}["tgi:mistral"].health == "healthy"


def test_schema_failures_do_not_open_the_circuit(make_router: RouterFactory, trajectory: Trajectory) -> None:
    with scripted(tgi_ok("not json")) as srv:
        router = make_router(tgi_endpoints={"mistral": srv.url}, breaker_failures=1)
        for _ in range(3):
            assert router.describe(trajectory, backend="tgi:mistral").fallback_kind == "schema"
        assert len(srv.requests) == 3  # alive and answering, just badly: keep asking


def test_backend_names_and_branch_defaults(make_router: RouterFactory, trajectory: Trajectory) -> None:
    router = make_router(openai_models=["gpt-4o-mini"])
    reg = router.registry
    assert reg.resolve("analytic") == "analytic"
    assert reg.resolve("openai") == "openai:gpt-4"
    assert reg.resolve("openai:gpt-4o-mini") == "openai:gpt-4o-mini"
    assert reg.resolve("tgi:phi-2") == "tgi:phi-2"
    for bad in ("tgi:llama", "foo", "analytic:x", "openai:bad name", "openai:gpt-4o"):
        with pytest.raises(NotFound, match="backend"):
            reg.resolve(bad)
    with pytest.raises(NotFound, match="branch"):
        router.describe(trajectory, branch="b9")
    # The request's backend wins over the branch default.
    res = router.describe(trajectory, branch="b1", backend="analytic")
    assert res.backend_requested == "analytic" and not res.fallback_used
    assert router.describe(trajectory).backend_requested == "analytic"  # service default


def test_list_backends_reports_config_and_health(make_router: RouterFactory) -> None:
    with scripted(tgi_ok(answer_json())) as up, socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # a port nobody listens on
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
        router = make_router(tgi_endpoints={"mistral": up.url, "phi-2": down}, openai_api_key="sk-x")
        st = {s.name: s for s in router.registry.statuses()}
        assert up.health_checks == 1
        assert set(st) == {"analytic", "openai:gpt-4", "tgi:mistral", "tgi:phi-2"}
        assert st["analytic"].health == "healthy"
        assert st["openai:gpt-4"].health == "healthy" and st["openai:gpt-4"].model == "gpt-4"
        assert st["tgi:mistral"].endpoint == up.url and st["tgi:mistral"].health == "healthy"
        assert st["tgi:phi-2"].health == "unreachable" and "GET /health failed" in st["tgi:phi-2"].detail
        assert all("sk-x" not in s.detail for s in st.values())
        # A TGI that answers 503 (still loading the model) is reported, once the cache expires.
        up.health_status = 503
        fresh = make_router(tgi_endpoints={"mistral": up.url})
        st = {s.name: s for s in fresh.registry.statuses()}
        assert st["tgi:mistral"].health == "unreachable" and "HTTP 503" in st["tgi:mistral"].detail
        assert st["tgi:phi-2"].health == "not_configured" and "TGI_ENDPOINTS" in st["tgi:phi-2"].detail


def test_deadline_too_short_falls_back_without_calling(
    make_router: RouterFactory, trajectory: Trajectory
) -> None:
    with scripted(tgi_ok(answer_json())) as srv:
        router = make_router(tgi_endpoints={"mistral": srv.url})
        res = router.describe(trajectory, backend="tgi:mistral", time_remaining=0.1)
        assert res.fallback_kind == "timeout" and srv.requests == []
        # ... and that says nothing about the backend's health.
        assert {s.name: s for s in router.registry.statuses()}["tgi:mistral"].health == "healthy"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_fallbacks_by_reason_and_scores(make_router: RouterFactory) -> None:
    tr = make_trajectory("parabolic", 5)
    traj = Trajectory(tr.observed, tr.observed_times)
    router = make_router()
    before_fb = _sample("trajlab_describer_fallbacks_total", backend="tgi:phi-2", reason="not_configured")
    before_req = _sample(
        "trajlab_describer_requests_total",
        branch="b4",
        backend_requested="tgi:phi-2",
        backend_used="analytic",
        outcome="fallback",
    )
    before_acc = _sample("trajlab_describer_equations_scored_total", backend="analytic", result="accurate")
    res = router.describe(traj, branch="b4", truth=tr.positions, truth_times=tr.times)
    assert res.score is not None and res.score.accurate
    assert (
        _sample("trajlab_describer_fallbacks_total", backend="tgi:phi-2", reason="not_configured")
        == before_fb + 1
    )
    assert (
        _sample(
            "trajlab_describer_requests_total",
            branch="b4",
            backend_requested="tgi:phi-2",
            backend_used="analytic",
            outcome="fallback",
        )
        == before_req + 1
    )
    assert (
        _sample("trajlab_describer_equations_scored_total", backend="analytic", result="accurate")
        == before_acc + 1
    )


def test_scoring_an_llm_answer_against_truth(make_router: RouterFactory) -> None:
    t = np.arange(20) / 8.0
    truth = np.c_[1 + 0.5 * t, 2 - 0.3 * t, 5 + 0.2 * t]
    traj = Trajectory(truth[:16], t[:16])
    with scripted(tgi_ok(answer_json()), tgi_ok(answer_json(x="1 + 0.9*t"))) as srv:
        router = make_router(tgi_endpoints={"mistral": srv.url})
        good = router.describe(traj, backend="tgi:mistral", truth=truth, truth_times=t)
        bad = router.describe(traj, backend="tgi:mistral", truth=truth, truth_times=t)
    assert good.score is not None and good.score.accurate and good.backend_used == "tgi:mistral"
    assert bad.score is not None and bad.score.parsed and not bad.score.accurate

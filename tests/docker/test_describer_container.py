"""The describer image, started with testcontainers, answers its contract over loopback.

Without an OpenAI key or TGI container (as in a plain ``docker compose up`` without
secrets), a request for a language-model backend is answered by the analytic backend
and says so: never a silent substitute.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from tests.docker.containers import DescriberContainer
from trajlab.common.v1 import common_pb2
from trajlab.describer.v1 import describer_pb2

# Generous: the first test of a session may build its image from scratch (minutes on 2 cores).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def describer(image) -> Iterator[DescriberContainer]:  # type: ignore[no-untyped-def]
    # A TGI endpoint that refuses connections, as when the local-llm profile is off.
    with DescriberContainer(
        image=image("describer"),
        TRAJLAB_DESCRIBER_TGI_ENDPOINTS='{"mistral": "http://127.0.0.1:9", "phi-2": "http://127.0.0.1:9"}',
    ) as c:
        yield c


def _line(n: int = 12, fps: float = 8.0) -> tuple[list[common_pb2.Point3], list[float]]:
    """x = 1 + 2t, y = 0.5 - t, z = 3: a straight line, world units over seconds."""
    t = np.arange(n) / fps
    pts = [common_pb2.Point3(x=1 + 2 * s, y=0.5 - s, z=3.0) for s in t]
    return pts, [float(s) for s in t]


def _request(backend: str = "analytic", **kw) -> describer_pb2.DescribeRequest:  # type: ignore[no-untyped-def]
    pts, times = _line(16)
    return describer_pb2.DescribeRequest(
        observed=pts[:12],
        observed_times=times[:12],
        forecast=pts[12:],
        forecast_times=times[12:],
        truth=pts,
        truth_times=times,
        predicted_class=common_pb2.MOTION_CLASS_LINEAR,
        backend=backend,
        **kw,
    )


def test_analytic_backend_recovers_a_line_and_scores_it(describer: DescriberContainer) -> None:
    resp = describer.stub().Describe(_request("analytic"), timeout=30)
    assert resp.backend_used == "analytic" and not resp.fallback_used
    assert resp.score.scored and resp.score.parsed and resp.score.accurate
    assert resp.description


@pytest.mark.parametrize("backend", ["openai", "tgi:mistral"])
def test_unreachable_language_models_fall_back_loudly(describer: DescriberContainer, backend: str) -> None:
    resp = describer.stub().Describe(_request(backend), timeout=60)
    assert resp.backend_used == "analytic"
    assert resp.fallback_used and resp.fallback_reason
    assert resp.backend_requested.startswith(backend.split(":")[0])


def test_list_backends_says_which_are_not_configured(describer: DescriberContainer) -> None:
    resp = describer.stub().ListBackends(describer_pb2.ListBackendsRequest(), timeout=10)
    kinds = {b.name: b for b in resp.backends}
    assert "analytic" in kinds
    openai = [b for b in resp.backends if b.kind == "openai"]
    assert openai and openai[0].health == describer_pb2.BACKEND_HEALTH_NOT_CONFIGURED
    assert resp.branch_defaults  # b1..b4 -> their backends


@pytest.mark.parametrize(
    "request_",
    [
        describer_pb2.DescribeRequest(),  # no points at all
        describer_pb2.DescribeRequest(
            observed=[common_pb2.Point3(x=0, y=0, z=0)] * 5, observed_times=[0.0, 0.1]
        ),  # times do not match the points
    ],
    ids=["empty", "mismatched-times"],
)
def test_bad_requests_are_invalid_argument(describer: DescriberContainer, request_) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        describer.stub().Describe(request_, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()


def test_unknown_backend_is_refused(describer: DescriberContainer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        describer.stub().Describe(_request("no-such-backend"), timeout=10)
    assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)


def test_metrics_show_requests_by_backend_and_fallbacks(describer: DescriberContainer) -> None:
    describer.stub().Describe(_request("openai"), timeout=60)
    with urllib.request.urlopen(describer.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    assert "trajlab_describer_requests_total{" in text
    assert "trajlab_describer_fallbacks_total{" in text

"""gRPC servicer: protobuf <-> domain only. Validation errors name the field."""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
import numpy as np

from services.describer.backends.base import Trajectory
from services.describer.router import RoutedResult, Router
from trajlab.common.v1 import common_pb2
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.errors import InvalidArgument
from trajlab.profiles import CLASS_NAMES

SERVICE_NAME = describer_pb2.DESCRIPTOR.services_by_name["DescriberService"].full_name
# Work bounds of one Describe (docs/RELIABILITY.md has the measured cost at the limit).
# A trajectory has tens of points; the fit's ω scan holds ~100 copies of the points, so
# the point count bounds memory and time per call.
MAX_POINTS = 2048  # per list
MAX_COORDINATE = 1e6  # |x|, |y|, |z| in world units
MAX_TIME = 1e10  # |t| in seconds: Unix timestamps in seconds fit, in milliseconds do not
MIN_TIME_STEP = 1e-6  # seconds between consecutive times
STEP_SPACINGS = 1024  # ... and float64 spacings of t between them

_HEALTH = {
    "healthy": describer_pb2.BACKEND_HEALTH_HEALTHY,
    "not_configured": describer_pb2.BACKEND_HEALTH_NOT_CONFIGURED,
    "circuit_open": describer_pb2.BACKEND_HEALTH_CIRCUIT_OPEN,
    "probing": describer_pb2.BACKEND_HEALTH_PROBING,
    "unreachable": describer_pb2.BACKEND_HEALTH_UNREACHABLE,
}


def _points(field: str, pts: Sequence[common_pb2.Point3]) -> np.ndarray:
    if len(pts) > MAX_POINTS:
        raise InvalidArgument(f"{field}: at most {MAX_POINTS} points per request, got {len(pts)}")
    arr = np.array([(p.x, p.y, p.z) for p in pts], dtype=np.float64).reshape(-1, 3)
    bad = np.argwhere(~(np.abs(arr) <= MAX_COORDINATE))  # NaN fails too
    if bad.size:
        i, j = bad[0]
        raise InvalidArgument(
            f"{field}[{i}].{'xyz'[j]} = {arr[i, j]!r} is outside the accepted range "
            f"[-{MAX_COORDINATE:g}, {MAX_COORDINATE:g}] world units"
        )
    return arr


def _times(field: str, values: Sequence[float], n: int, points_field: str) -> np.ndarray:
    if len(values) != n:
        msg = f"{field}: {len(values)} times for {n} {points_field} points; lengths must match"
        raise InvalidArgument(msg)
    t = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = np.argwhere(~(np.abs(t) <= MAX_TIME))  # NaN fails too
    if bad.size:
        i = bad[0][0]
        raise InvalidArgument(
            f"{field}[{i}] = {t[i]!r} is outside the accepted range [-{MAX_TIME:g}, {MAX_TIME:g}] seconds"
        )
    # Steps must also be far above float64's resolution at t (2e-6 s at 1e10 s), or the
    # times are rounding noise: at least MIN_TIME_STEP and STEP_SPACINGS spacings.
    if n > 1:
        need = np.maximum(MIN_TIME_STEP, STEP_SPACINGS * np.spacing(np.abs(t[1:])))
        short = np.flatnonzero(np.diff(t) < need)
        if short.size:
            i = int(short[0])
            raise InvalidArgument(
                f"{field}: times must increase by at least {float(need[i]):.3g} s here "
                f"(max({MIN_TIME_STEP:g} s, {STEP_SPACINGS} float64 spacings)); "
                f"[{i}] = {t[i]!r} is followed by {t[i + 1]!r}"
            )
    return t


Domain = tuple[Trajectory, np.ndarray | None, np.ndarray | None]


def request_to_domain(req: describer_pb2.DescribeRequest) -> Domain:
    """(trajectory, truth, truth_times) from a request; InvalidArgument naming the field."""
    observed = _points("observed", req.observed)
    if observed.shape[0] < 3:
        raise InvalidArgument(f"observed: need at least 3 points, got {observed.shape[0]}")
    obs_t = _times("observed_times", req.observed_times, observed.shape[0], "observed")
    forecast = _points("forecast", req.forecast)
    fc_t = _times("forecast_times", req.forecast_times, forecast.shape[0], "forecast")
    cls_value = int(req.predicted_class)
    if cls_value < 0 or cls_value > len(CLASS_NAMES):
        raise InvalidArgument(f"predicted_class: unknown value {cls_value}")
    predicted = CLASS_NAMES[cls_value - 1] if cls_value > 0 else None
    truth = truth_t = None
    if len(req.truth) or len(req.truth_times):
        truth = _points("truth", req.truth)
        truth_t = _times("truth_times", req.truth_times, truth.shape[0], "truth")
        if truth.shape[0] and float(np.max(truth.max(axis=0) - truth.min(axis=0))) <= 0.0:
            raise InvalidArgument("truth: all points are equal; an extent of 0 cannot normalise a score")
    traj = Trajectory(observed, obs_t, forecast, fc_t, predicted)
    return traj, truth, truth_t


def result_to_proto(res: RoutedResult) -> describer_pb2.DescribeResponse:
    d = res.description
    cls = d.described_class
    resp = describer_pb2.DescribeResponse(
        equations=describer_pb2.AxisEquations(x=d.equations[0], y=d.equations[1], z=d.equations[2]),
        description=d.description,
        backend_used=res.backend_used,
        model=d.model,
        fallback_used=res.fallback_used,
        fallback_reason=res.fallback_reason,
        backend_requested=res.backend_requested,
        latency_ms=res.latency_ms,
        prompt_version=d.prompt_version,
        described_class=(CLASS_NAMES.index(cls) + 1) if cls in CLASS_NAMES else 0,
        prompt_tokens=d.prompt_tokens,
        completion_tokens=d.completion_tokens,
    )
    if res.usage is not None:
        u = res.usage
        resp.usage.CopyFrom(
            describer_pb2.BackendUsage(
                backend=u.backend,
                attempts=u.attempts,
                prompt_tokens=u.prompt_tokens,
                completion_tokens=u.completion_tokens,
                seconds=u.seconds,
                priced=res.cost is not None,
                cost=res.cost or 0.0,
            )
        )
    if res.score is not None:
        s = res.score
        resp.score.CopyFrom(
            describer_pb2.EquationScore(
                scored=s.scored,
                parsed=s.parsed,
                # protobuf doubles carry inf, but a plain -1 is easier on dashboards and JSON
                normalized_rmse=s.normalized_rmse if math.isfinite(s.normalized_rmse) else -1.0,
                accurate=s.accurate,
                error=s.error,
            )
        )
    return resp


class DescriberServicer(describer_pb2_grpc.DescriberServiceServicer):
    """Describe and ListBackends over an injected :class:`Router`."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def Describe(
        self, request: describer_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> describer_pb2.DescribeResponse:
        traj, truth, truth_t = request_to_domain(request)
        remaining = context.time_remaining()
        if remaining is not None and remaining > 1e6:
            remaining = None  # no deadline set: grpc reports a huge number of seconds
        result = self._router.describe(
            traj,
            is_active=context.is_active,
            backend=request.backend,
            branch=request.branch,
            time_remaining=remaining,
            truth=truth,
            truth_times=truth_t,
        )
        return result_to_proto(result)

    def ListBackends(
        self, request: describer_pb2.ListBackendsRequest, context: grpc.ServicerContext
    ) -> describer_pb2.ListBackendsResponse:
        reg = self._router.registry
        resp = describer_pb2.ListBackendsResponse(branch_defaults=dict(reg.branch_defaults))
        for st in reg.statuses():
            resp.backends.append(
                describer_pb2.BackendInfo(
                    name=st.name,
                    kind=st.kind,
                    model=st.model,
                    endpoint=st.endpoint,
                    health=_HEALTH.get(st.health, describer_pb2.BACKEND_HEALTH_UNSPECIFIED),
                    detail=st.detail,
                    consecutive_failures=st.consecutive_failures,
                )
            )
        return resp

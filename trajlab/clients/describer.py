"""Typed client of the describer service.

>>> with DescriberClient("127.0.0.1:50053") as d:
...     r = d.describe(observed, observed_times, predicted_class="circular", branch="b1")
...     r.equations, r.fallback_used, r.fallback_reason

Every call has a deadline (``timeout`` seconds, per client or per call); the
service gives a remote backend what is left of it and falls back to its analytic
fitter before it runs out. Describe and ListBackends only read, so gRPC retries
them on UNAVAILABLE. Failures raise ``grpc.RpcError`` with the server's status
code and a message naming the bad field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trajlab.clients._channel import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    connect_now,
    open_channel,
)
from trajlab.common.v1 import common_pb2
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc

SERVICE = "trajlab.describer.v1.DescriberService"
# The wire's MotionClass values 1, 2, ... by name, read off the contract (equal to
# trajlab.profiles.CLASS_NAMES, which a test keeps so) rather than imported from the profiles,
# whose imports (pydantic-settings, dotenv, YAML) a command that only calls services would pay
# at every start.
CLASS_NAMES: tuple[str, ...] = tuple(
    name.removeprefix("MOTION_CLASS_").lower()
    for name, value in sorted(common_pb2.MotionClass.items(), key=lambda item: item[1])
    if value > 0
)
_HEALTH_NAMES = {
    describer_pb2.BACKEND_HEALTH_UNSPECIFIED: "unknown",
    describer_pb2.BACKEND_HEALTH_HEALTHY: "healthy",
    describer_pb2.BACKEND_HEALTH_NOT_CONFIGURED: "not_configured",
    describer_pb2.BACKEND_HEALTH_CIRCUIT_OPEN: "circuit_open",
    describer_pb2.BACKEND_HEALTH_PROBING: "probing",
    describer_pb2.BACKEND_HEALTH_UNREACHABLE: "unreachable",
}

ArrayLike = np.ndarray | Sequence[Sequence[float]]


@dataclass(frozen=True)
class Score:
    """Equations against the truth: normalized_rmse = RMSE / extent (None when unparsable)."""

    parsed: bool
    normalized_rmse: float | None
    accurate: bool
    error: str


@dataclass(frozen=True)
class Usage:
    """What the requested language model spent on one Describe (DescribeResponse.usage)."""

    backend: str  # e.g. "openai:gpt-4"
    attempts: int  # calls made, retries included
    prompt_tokens: int  # over every call, as the API reported them
    completion_tokens: int
    seconds: float  # wall time of the calls: GPU time for a local model
    cost: float | None  # money by the describer's price table; None when not priced


@dataclass(frozen=True)
class Described:
    """A Describe answer."""

    equations: tuple[str, str, str]  # x(t), y(t), z(t), t in seconds
    description: str
    described_class: str | None
    backend_requested: str
    backend_used: str
    model: str
    fallback_used: bool
    fallback_reason: str
    latency_ms: float
    prompt_version: str
    prompt_tokens: int
    completion_tokens: int
    score: Score | None  # None when no truth was sent
    usage: Usage | None = None  # None when no language model was called

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    kind: str
    model: str
    endpoint: str
    health: str  # healthy, not_configured, circuit_open, probing, unreachable, unknown
    detail: str
    consecutive_failures: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _points(arr: ArrayLike | None, field: str) -> list[common_pb2.Point3]:
    if arr is None:
        return []
    a = np.asarray(arr, dtype=np.float64)
    if a.size == 0:
        return []
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{field} must have shape (N, 3), got {a.shape}")
    return [common_pb2.Point3(x=float(x), y=float(y), z=float(z)) for x, y, z in a]


def _times(arr: Sequence[float] | np.ndarray | None) -> list[float]:
    return [] if arr is None else [float(v) for v in np.asarray(arr, dtype=np.float64).reshape(-1)]


def _class_value(name: str | None) -> int:
    if not name:
        return 0
    if name not in CLASS_NAMES:
        raise ValueError(f"predicted_class must be one of {CLASS_NAMES}, got {name!r}")
    return CLASS_NAMES.index(name) + 1


class DescriberClient:
    """Blocking client; use as a context manager or call ``close()``."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = open_channel(
            target, max_message_bytes=max_message_bytes, idempotent=[(SERVICE, None)]
        )
        self._stub = describer_pb2_grpc.DescriberServiceStub(self._channel)

    def __enter__(self) -> DescriberClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def connect(self) -> None:
        """Start connecting now, without waiting (the first call would otherwise)."""
        connect_now(self._channel)

    def describe(
        self,
        observed: ArrayLike,
        observed_times: Sequence[float] | np.ndarray,
        *,
        forecast: ArrayLike | None = None,
        forecast_times: Sequence[float] | np.ndarray | None = None,
        predicted_class: str | None = None,
        backend: str = "",
        branch: str = "",
        truth: ArrayLike | None = None,
        truth_times: Sequence[float] | np.ndarray | None = None,
        timeout: float | None = None,
    ) -> Described:
        """Describe a trajectory: positions (N, 3) in world units, times in seconds."""
        req = describe_request(
            observed,
            observed_times,
            forecast=forecast,
            forecast_times=forecast_times,
            predicted_class=predicted_class,
            backend=backend,
            branch=branch,
            truth=truth,
            truth_times=truth_times,
        )
        resp = self._stub.Describe(req, timeout=timeout or self.timeout)
        return response_to_described(resp)

    def list_backends(self, *, timeout: float | None = None) -> tuple[list[BackendInfo], dict[str, str]]:
        """(backends, branch -> default backend)."""
        resp = self._stub.ListBackends(describer_pb2.ListBackendsRequest(), timeout=timeout or self.timeout)
        infos = [
            BackendInfo(
                b.name,
                b.kind,
                b.model,
                b.endpoint,
                _HEALTH_NAMES.get(b.health, "unknown"),
                b.detail,
                int(b.consecutive_failures),
            )
            for b in resp.backends
        ]
        return infos, dict(resp.branch_defaults)


def describe_request(
    observed: ArrayLike,
    observed_times: Sequence[float] | np.ndarray,
    *,
    forecast: ArrayLike | None = None,
    forecast_times: Sequence[float] | np.ndarray | None = None,
    predicted_class: str | None = None,
    backend: str = "",
    branch: str = "",
    truth: ArrayLike | None = None,
    truth_times: Sequence[float] | np.ndarray | None = None,
) -> describer_pb2.DescribeRequest:
    """The DescribeRequest for these arrays (ValueError for a wrong shape or class name)."""
    return describer_pb2.DescribeRequest(
        observed=_points(observed, "observed"),
        observed_times=_times(observed_times),
        forecast=_points(forecast, "forecast"),
        forecast_times=_times(forecast_times),
        predicted_class=_class_value(predicted_class),  # type: ignore[arg-type]
        backend=backend,
        branch=branch,
        truth=_points(truth, "truth"),
        truth_times=_times(truth_times),
    )


def response_to_described(resp: describer_pb2.DescribeResponse) -> Described:
    cls = int(resp.described_class)
    score = None
    if resp.HasField("score") and resp.score.scored:
        s = resp.score
        score = Score(s.parsed, s.normalized_rmse if s.normalized_rmse >= 0 else None, s.accurate, s.error)
    return Described(
        equations=(resp.equations.x, resp.equations.y, resp.equations.z),
        description=resp.description,
        described_class=CLASS_NAMES[cls - 1] if 0 < cls <= len(CLASS_NAMES) else None,
        backend_requested=resp.backend_requested,
        backend_used=resp.backend_used,
        model=resp.model,
        fallback_used=resp.fallback_used,
        fallback_reason=resp.fallback_reason,
        latency_ms=resp.latency_ms,
        prompt_version=resp.prompt_version,
        prompt_tokens=int(resp.prompt_tokens),
        completion_tokens=int(resp.completion_tokens),
        score=score,
        usage=_usage(resp),
    )


def _usage(resp: describer_pb2.DescribeResponse) -> Usage | None:
    if not resp.HasField("usage"):
        return None
    u = resp.usage
    return Usage(
        backend=u.backend,
        attempts=int(u.attempts),
        prompt_tokens=int(u.prompt_tokens),
        completion_tokens=int(u.completion_tokens),
        seconds=u.seconds,
        cost=u.cost if u.priced else None,
    )


__all__ = [
    "BackendInfo",
    "Described",
    "DescriberClient",
    "Score",
    "Usage",
    "describe_request",
    "response_to_described",
]

"""What every describer backend shares: the input, the answer, the failure kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Trajectory:
    """A trajectory to describe. Positions in world units, times in seconds."""

    observed: np.ndarray  # (n, 3), n >= 3
    observed_times: np.ndarray  # (n,), strictly increasing
    forecast: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (m, 3), a video model's
    forecast_times: np.ndarray = field(default_factory=lambda: np.zeros((0,)))  # (m,)
    predicted_class: str | None = None  # one of trajlab.profiles.CLASS_NAMES, or None

    @property
    def next_time(self) -> float:
        """Time of the frame after the last observed one, seconds."""
        t = self.observed_times
        return float(t[-1] + np.median(np.diff(t)))


@dataclass(frozen=True)
class Description:
    """A backend's answer."""

    equations: tuple[str, str, str]  # x(t), y(t), z(t) in the symbol t (seconds)
    description: str
    described_class: str | None  # the motion class the answer describes, if it says
    model: str = ""  # e.g. "gpt-4"; empty for analytic
    prompt_version: str = ""  # e.g. "openai/v1"; empty for analytic
    prompt_tokens: int = 0
    completion_tokens: int = 0


class FailureKind(StrEnum):
    """Why a backend could not answer; the value is the metrics label and the reason prefix."""

    NOT_CONFIGURED = "not_configured"  # no key, no endpoint
    UNREACHABLE = "unreachable"  # connection refused, DNS, reset
    TIMEOUT = "timeout"  # no complete answer within the request's budget (a total deadline)
    RATE_LIMITED = "rate_limited"  # HTTP 429 / TGI "overloaded"
    SERVER_ERROR = "server_error"  # HTTP 5xx, TGI generation errors, unreadable HTTP body
    CLIENT_ERROR = "client_error"  # HTTP 4xx other than 429 (bad key, prompt too long, unknown model)
    SCHEMA = "schema"  # the model's output is not JSON or does not match the schema
    UNSAFE_EQUATION = "unsafe_equation"  # an equation the safe parser refused
    CIRCUIT_OPEN = "circuit_open"  # not tried: the circuit breaker is open
    BUSY = "busy"  # not tried: every upstream call slot is taken (slow upstreams)
    CANCELLED = "cancelled"  # the caller gave up (gRPC cancel or deadline) while waiting


# Failures that say the backend (not the model's answer) is unwell: they count for
# the circuit breaker. A model that writes a bad equation is alive and answering.
# Client errors count too: a refused key or an unknown model fails every call alike.
BREAKER_FAILURES = frozenset(
    {
        FailureKind.UNREACHABLE,
        FailureKind.TIMEOUT,
        FailureKind.RATE_LIMITED,
        FailureKind.SERVER_ERROR,
        FailureKind.CLIENT_ERROR,
    }
)
# Failures worth one more attempt within the deadline.
RETRYABLE = frozenset({FailureKind.RATE_LIMITED, FailureKind.SERVER_ERROR})


class BackendError(Exception):
    """A backend failed; ``kind`` classifies it, the message is safe to show (no secrets)."""

    def __init__(
        self,
        kind: FailureKind,
        detail: str,
        *,
        retry_after: float | None = None,
        retryable: bool | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did
        # None: decided by kind (RETRYABLE); False e.g. for a body that is not the API's at all
        self.retryable = kind in RETRYABLE if retryable is None else retryable
        self.prompt_tokens = prompt_tokens  # spent even though the answer was unusable
        self.completion_tokens = completion_tokens


class Backend(Protocol):
    """One way of describing a trajectory."""

    name: str  # as used in requests, e.g. "openai:gpt-4", "tgi:mistral"
    kind: str  # "analytic", "openai" or "tgi"
    model: str
    endpoint: str

    def configured(self) -> tuple[bool, str]:
        """(usable, detail): False with the reason when a key or endpoint is missing."""
        ...

    def describe(self, trajectory: Trajectory, timeout_s: float) -> Description:
        """Answer within ``timeout_s`` seconds or raise :class:`BackendError`."""
        ...

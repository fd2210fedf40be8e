"""Routing: pick the backend, guard it with a circuit breaker, retry once, fall back to analytic.

Backend names in requests: "analytic", "openai" (the configured default model),
"openai:<model>", "tgi:<model>" (a model named in the TGI settings, e.g. "mistral",
"phi-2"). An empty name takes the branch's ``describer_backend``, then the service
default. Whenever the chosen backend cannot answer, the analytic backend answers
instead and the result says so (``fallback_used``, ``fallback_reason``), as do the
metrics and the log: never a silent substitute.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from services.describer import metrics
from services.describer.backends.analytic import AnalyticBackend
from services.describer.backends.base import (
    BREAKER_FAILURES,
    Backend,
    BackendError,
    Description,
    FailureKind,
    Trajectory,
)
from services.describer.backends.openai_backend import OpenAIBackend
from services.describer.backends.tgi_backend import TGIBackend
from services.describer.backends.upstream import UpstreamPool
from services.describer.breaker import BreakerState, CircuitBreaker
from services.describer.settings import DescriberSettings
from services.describer.usage import Usage
from trajlab.equations import EquationScore, score_equations
from trajlab.errors import CallAbandoned, NotFound, quoted

log = logging.getLogger(__name__)

MIN_ATTEMPT_SECONDS = 0.05  # below this budget a remote call is not worth starting
MAX_RETRY_WAIT_SECONDS = 5.0  # a server asking for a longer pause gets none: fall back now
# Failures that say nothing about the backend's health: it was not called, or we stopped waiting.
_NOT_THE_BACKENDS = frozenset({FailureKind.BUSY, FailureKind.CANCELLED})
_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.OPEN: 1, BreakerState.HALF_OPEN: 2}


@dataclass(frozen=True)
class BackendStatus:
    """One backend as ListBackends reports it."""

    name: str
    kind: str
    model: str
    endpoint: str
    health: str  # "healthy", "not_configured", "circuit_open", "probing", "unreachable"
    detail: str
    consecutive_failures: int


@dataclass(frozen=True)
class RoutedResult:
    """A Describe answer with how it was obtained."""

    description: Description
    backend_requested: str
    backend_used: str
    fallback_used: bool
    fallback_kind: str  # FailureKind value, "" without fallback
    fallback_reason: str  # "<kind>: <detail>", "" without fallback
    latency_ms: float
    score: EquationScore | None
    usage: Usage | None = None  # what the requested language model spent; None when none was called
    cost: float | None = None  # usage priced by settings.prices; None when not priced


def _stopper(deadline: float, is_active: Callable[[], bool] | None) -> Callable[[], bool]:
    """True once the caller's deadline passed or it stopped waiting (cancelled)."""

    def stop() -> bool:
        return time.monotonic() > deadline or (is_active is not None and not is_active())

    return stop


class BackendRegistry:
    """Backends by canonical name, created on first use, each with its own breaker."""

    def __init__(
        self,
        settings: DescriberSettings,
        branch_defaults: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.branch_defaults = dict(branch_defaults)
        self.analytic = AnalyticBackend()
        self._clock = clock
        self._lock = threading.Lock()
        self._backends: dict[str, Backend] = {"analytic": self.analytic}
        self.upstream = UpstreamPool(settings.upstream_max_calls)
        # The operator's list, plus models the branch configs name (also the operator's).
        named = [b.split(":", 1)[1] for b in self.branch_defaults.values() if b.lower().startswith("openai:")]
        self.openai_models = list(dict.fromkeys([*settings.allowed_openai_models(), *named]))
        self._breakers: dict[str, CircuitBreaker] = {}

    def tgi_models(self) -> list[str]:
        return sorted(set(self.settings.tgi_families) | set(self.settings.tgi_endpoints))

    def resolve(self, name: str) -> str:
        """Canonical name for a request's backend string; NotFound when unknown."""
        raw = name.strip()
        kind, _, model = raw.partition(":")
        kind = kind.lower()
        if kind == "analytic" and not model:
            return "analytic"
        if kind == "openai":
            # Which models are called on the operator's key is the operator's choice
            # (settings.openai_models), not whoever asks first.
            model = model or self.settings.openai_model
            allowed = self.openai_models
            if model not in allowed:
                raise NotFound(
                    f"backend: OpenAI model {quoted(model)} is not enabled here; enabled: "
                    f"{', '.join(allowed)} (operators: TRAJLAB_DESCRIBER_OPENAI_MODELS)"
                )
            return f"openai:{model}"
        if kind == "tgi" and model in self.tgi_models():
            return f"tgi:{model}"
        known = [
            "analytic",
            *(f"openai:{m}" for m in self.openai_models),
            *(f"tgi:{m}" for m in self.tgi_models()),
        ]
        raise NotFound(f"backend: unknown backend {quoted(raw)}; known: {', '.join(known)}")

    def default_for(self, branch: str) -> str:
        if branch:
            if branch not in self.branch_defaults:
                raise NotFound(
                    f"branch: unknown branch {quoted(branch)}; "
                    f"known: {', '.join(sorted(self.branch_defaults))}"
                )
            return self.branch_defaults[branch]
        return self.settings.default_backend

    def get(self, canonical: str) -> Backend:
        with self._lock:
            backend = self._backends.get(canonical)
            if backend is None:
                backend = self._create(canonical)
                self._backends[canonical] = backend
            return backend

    def _create(self, canonical: str) -> Backend:
        s = self.settings
        kind, _, model = canonical.partition(":")
        if kind == "openai":
            return OpenAIBackend(
                model=model,
                base_url=s.openai_base_urls.get(model, s.openai_base_url),
                api_key=s.resolve_openai_key,
                structured_output=s.openai_structured_output,
                max_tokens=s.openai_max_tokens,
                prompt_version=s.prompt_version,
            )
        family = s.tgi_families.get(model) or ("phi" if model.lower().startswith("phi") else "mistral")
        return TGIBackend(
            model=model,
            family=family,
            endpoint=s.tgi_endpoints.get(model, ""),
            max_new_tokens=s.tgi_max_new_tokens,
            prompt_version=s.prompt_version,
        )

    def breaker(self, canonical: str) -> CircuitBreaker:
        with self._lock:
            br = self._breakers.get(canonical)
            if br is None:
                br = CircuitBreaker(
                    self.settings.breaker_failures, self.settings.breaker_reset_seconds, self._clock
                )
                self._breakers[canonical] = br
            return br

    def timeout_for(self, backend: Backend) -> float:
        return (
            self.settings.openai_timeout_seconds
            if backend.kind == "openai"
            else self.settings.tgi_timeout_seconds
        )

    def statuses(self) -> list[BackendStatus]:
        names = ["analytic", f"openai:{self.settings.openai_model}"]
        for b in self.branch_defaults.values():
            try:
                names.append(self.resolve(b))
            except NotFound:
                log.warning("branch default backend %r is unknown", b)
        names += [f"tgi:{m}" for m in self.tgi_models()]
        with self._lock:
            names += list(self._backends)
        unique = list(dict.fromkeys(names))
        backends = {name: self.get(name) for name in unique}
        # Health probes (TGI's GET /health) run side by side: ListBackends waits ~1 s at most.
        probes: dict[str, tuple[bool, str]] = {}
        probing = [n for n, b in backends.items() if hasattr(b, "probe") and b.configured()[0]]
        if probing:
            with ThreadPoolExecutor(max_workers=len(probing)) as pool:
                for n, res in zip(probing, pool.map(lambda n: backends[n].probe(), probing), strict=True):
                    probes[n] = res
        out = []
        for name in unique:
            backend = backends[name]
            ok, detail = backend.configured()
            br = self.breaker(name)
            state = br.state()
            if not ok:
                health = "not_configured"
            elif state == BreakerState.OPEN:
                health = "circuit_open"
                detail = f"{detail}; circuit open, next probe in {br.seconds_until_probe():.1f} s"
            elif state == BreakerState.HALF_OPEN:
                health = "probing"
            elif name in probes and not probes[name][0]:
                health = "unreachable"
                detail = f"{detail}; {probes[name][1]}"
            else:
                health = "healthy"
            out.append(
                BackendStatus(
                    name,
                    backend.kind,
                    backend.model,
                    backend.endpoint,
                    health,
                    detail,
                    br.consecutive_failures,
                )
            )
        return out


class Router:
    """Describe with routing, retries, circuit breaking, fallback and scoring."""

    def __init__(self, registry: BackendRegistry, sleep: Callable[[float], None] = time.sleep) -> None:
        self.registry = registry
        self._sleep = sleep

    def describe(
        self,
        trajectory: Trajectory,
        *,
        backend: str = "",
        branch: str = "",
        time_remaining: float | None = None,
        truth: np.ndarray | None = None,
        truth_times: np.ndarray | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> RoutedResult:
        """Answer with the requested backend or, failing that, with analytic (and say why).

        ``time_remaining`` is the caller's deadline in seconds (None: no deadline);
        ``is_active`` says whether the caller still waits (False: cancelled or expired),
        checked while an upstream answer is awaited and between the fit's stages.
        Raises NotFound for an unknown backend or branch, Cancelled when the caller left.
        """
        start = time.monotonic()
        deadline = start + time_remaining if time_remaining is not None else math.inf
        requested = self.registry.resolve(backend or self.registry.default_for(branch))
        failure: BackendError | None = None
        desc: Description | None = None
        usage = Usage(requested)
        if requested != "analytic":
            desc, failure = self._try_remote(requested, trajectory, deadline, is_active, usage)
            if failure is not None and failure.kind == FailureKind.CANCELLED:
                raise CallAbandoned(f"Describe: {failure.detail}; nothing more was done")
        if desc is None:
            desc = self.registry.analytic.describe(trajectory, should_stop=_stopper(deadline, is_active))
        used = requested if failure is None else "analytic"
        score = None
        if truth is not None and truth_times is not None and len(truth) > 0:
            score = score_equations(desc.equations, truth_times, truth)
            self._record_score(used, score)
        latency = time.monotonic() - start
        outcome = "ok" if failure is None else "fallback"
        metrics.REQUESTS.labels(branch or "-", requested, used, outcome).inc()
        metrics.LATENCY.labels(requested).observe(latency)
        reason = "" if failure is None else f"{failure.kind.value}: {failure.detail}"
        if failure is not None:
            metrics.FALLBACKS.labels(requested, failure.kind.value).inc()
            log.warning(
                "describer fell back from %s to analytic: %s",
                requested,
                reason,
                extra={"branch": branch or "-"},
            )
        spent = usage if usage.attempts else None
        cost = spent.cost(self.registry.settings.prices) if spent is not None else None
        if cost:
            metrics.COST.labels(requested).inc(cost)
        return RoutedResult(
            usage=spent,
            cost=cost,
            description=desc,
            backend_requested=requested,
            backend_used=used,
            fallback_used=failure is not None,
            fallback_kind="" if failure is None else failure.kind.value,
            fallback_reason=reason,
            latency_ms=latency * 1000.0,
            score=score,
        )

    def _try_remote(
        self,
        name: str,
        trajectory: Trajectory,
        deadline: float,
        is_active: Callable[[], bool] | None,
        usage: Usage,
    ) -> tuple[Description | None, BackendError | None]:
        """Call the backend (with one retry); ``usage`` gathers every attempt's tokens and time."""
        backend = self.registry.get(name)
        ok, detail = backend.configured()
        if not ok:
            return None, BackendError(FailureKind.NOT_CONFIGURED, detail)
        br = self.registry.breaker(name)
        if not br.allow():
            wait = br.seconds_until_probe()
            when = f"next probe in {wait:.1f} s" if wait > 0 else "a probe is in flight"
            return None, BackendError(
                FailureKind.CIRCUIT_OPEN, f"{name} failed {br.consecutive_failures} times in a row; {when}"
            )
        reserve = self.registry.settings.fallback_reserve_seconds
        attempts = 1 + self.registry.settings.retries
        failure: BackendError | None = None
        attempted = False
        try:
            for attempt in range(attempts):
                budget = min(self.registry.timeout_for(backend), deadline - time.monotonic() - reserve)
                if budget < MIN_ATTEMPT_SECONDS:
                    failure = failure or BackendError(
                        FailureKind.TIMEOUT, "the request's deadline leaves no time"
                    )
                    break
                t0 = time.monotonic()
                attempted = True
                try:
                    desc = self.registry.upstream.call(
                        lambda b=budget: backend.describe(trajectory, b), budget, is_active=is_active
                    )
                except BackendError as exc:
                    failure = exc
                except Exception as exc:  # a bug or an SDK surprise: log it, fall back, count it
                    log.exception("backend %s raised unexpectedly", name)
                    failure = BackendError(FailureKind.SERVER_ERROR, f"unexpected {exc.__class__.__name__}")
                else:
                    metrics.BACKEND_CALLS.labels(name, "ok").inc()
                    metrics.BACKEND_LATENCY.labels(name).observe(time.monotonic() - t0)
                    self._record_tokens(name, desc.prompt_tokens, desc.completion_tokens)
                    usage.add(desc.prompt_tokens, desc.completion_tokens, time.monotonic() - t0)
                    failure = None  # an earlier attempt may have failed (429, then success)
                    br.record_success()
                    return desc, None
                metrics.BACKEND_CALLS.labels(name, failure.kind.value).inc()
                metrics.BACKEND_LATENCY.labels(name).observe(time.monotonic() - t0)
                self._record_tokens(name, failure.prompt_tokens, failure.completion_tokens)
                usage.add(failure.prompt_tokens, failure.completion_tokens, time.monotonic() - t0)
                log.info("backend %s attempt %d failed: %s", name, attempt + 1, failure)
                if not failure.retryable or attempt + 1 >= attempts:
                    break
                wait = (
                    failure.retry_after
                    if failure.retry_after is not None
                    else self.registry.settings.retry_backoff_seconds
                )
                if (
                    wait > MAX_RETRY_WAIT_SECONDS
                    or time.monotonic() + wait + MIN_ATTEMPT_SECONDS + reserve > deadline
                ):
                    break  # no time left (or asked to wait too long) to try again
                self._sleep(wait)
        finally:
            if failure is not None and (not attempted or failure.kind in _NOT_THE_BACKENDS):
                br.release()  # never called (deadline too short): says nothing about health
            elif failure is not None:
                if failure.kind in BREAKER_FAILURES:
                    br.record_failure()
                else:
                    br.record_success()  # answered, just badly: the backend itself is alive
            metrics.CIRCUIT_STATE.labels(name).set(_STATE_VALUE[br.state()])
        return None, failure

    @staticmethod
    def _record_tokens(name: str, prompt: int, completion: int) -> None:
        if prompt:
            metrics.TOKENS.labels(name, "prompt").inc(prompt)
        if completion:
            metrics.TOKENS.labels(name, "completion").inc(completion)

    @staticmethod
    def _record_score(used: str, score: EquationScore) -> None:
        if not score.scored:
            return
        if not score.parsed:
            metrics.EQUATIONS_SCORED.labels(used, "unparsable").inc()
            return
        metrics.EQUATIONS_SCORED.labels(used, "accurate" if score.accurate else "inaccurate").inc()
        if math.isfinite(score.normalized_rmse):
            metrics.EQUATION_NRMSE.labels(used).observe(score.normalized_rmse)

"""Prometheus metrics of the describer (default registry, ``trajlab_describer_`` prefix)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "trajlab_describer_requests_total",
    "Describe calls by branch, requested backend, backend that answered and outcome (ok, fallback).",
    ["branch", "backend_requested", "backend_used", "outcome"],
)
LATENCY = Histogram(
    "trajlab_describer_latency_seconds",
    "Describe latency in seconds (routing, backend calls, fallback, scoring), by requested backend.",
    ["backend_requested"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BACKEND_CALLS = Counter(
    "trajlab_describer_backend_calls_total",
    "Attempts at a backend by result (ok or the failure kind).",
    ["backend", "result"],
)
BACKEND_LATENCY = Histogram(
    "trajlab_describer_backend_call_seconds",
    "Time of one attempt at a backend, seconds.",
    ["backend"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FALLBACKS = Counter(
    "trajlab_describer_fallbacks_total",
    "Answers given by the analytic backend instead of the requested one, by reason.",
    ["backend", "reason"],
)
TOKENS = Counter(
    "trajlab_describer_tokens_total",
    "Tokens reported by language-model backends, by kind (prompt, completion).",
    ["backend", "kind"],
)
COST = Counter(
    "trajlab_describer_cost_total",
    "Money spent at language-model backends by the price table (prices), in its currency; "
    "unpriced backends (local models) are not counted here.",
    ["backend"],
)
EQUATIONS_SCORED = Counter(
    "trajlab_describer_equations_scored_total",
    "Equation sets scored against supplied truth, by backend that answered and result "
    "(accurate, inaccurate, unparsable).",
    ["backend", "result"],
)
EQUATION_NRMSE = Histogram(
    "trajlab_describer_equation_nrmse",
    "Normalised RMSE (RMSE / extent) of scored equations; unparsable ones are not observed here.",
    ["backend"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
CIRCUIT_STATE = Gauge(
    "trajlab_describer_circuit_state",
    "Circuit breaker state per backend: 0 closed, 1 open, 2 half-open.",
    ["backend"],
)

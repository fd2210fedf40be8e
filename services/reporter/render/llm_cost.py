"""What each describer backend cost for the report's sample equations: calls, tokens,
latency, money (when the describer's price table has the backend) and the cost per
accurate equation.

An equation is accurate here exactly when the "Equations graded" section calls it right
(services.reporter.equation_grading, given the true positions): the family its sympy form is
equals the clip's true family and its RMS error on the observed frames is at most
``ACCURATE_PCT`` of the trajectory's extent. Money and tokens count every attempt at the
requested backend, answers that fell back included (they were generated and billed); accurate
equations count only answers that backend gave itself. Without the evaluation clips (their
times) nothing is graded and the count reads "not graded". A backend without a price (a local
model on vLLM or TGI) is shown by the wall time of its calls, the GPU time it held.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from services.reporter.equation_grading import ACCURATE_PCT, grade_sample
from services.reporter.model import ReportData, SampleDescription, ValidationSet
from services.reporter.render.blocks import MISSING, Para, Section, Table, ms

NOT_GRADED = "not graded (no evaluation clips)"


@dataclass(frozen=True)
class BackendCost:
    """One requested backend over the report's Describe calls."""

    backend: str
    calls: int  # Describe calls that got an answer
    answered_itself: int  # ... not through a fallback
    llm_calls: int  # calls to the language model (retries included)
    prompt_tokens: int
    completion_tokens: int
    latency_p50_ms: float | None  # Describe round trip as the describer timed it
    llm_seconds: float  # wall time of the language-model calls (GPU time for a local model)
    priced: bool  # every call that reached the model had a price
    cost: float | None  # money, when priced
    accurate: int | None  # answers by the backend itself graded right; None: not graded

    @property
    def cost_per_accurate(self) -> float | None:
        if self.cost is None or not self.accurate:
            return None
        return self.cost / self.accurate

    @property
    def seconds_per_accurate(self) -> float | None:
        return self.llm_seconds / self.accurate if self.accurate else None


def _accurate(samples: list[SampleDescription], validation: ValidationSet | None) -> int | None:
    """How many of ``samples`` the report's equation grading calls right (None: not graded)."""
    if validation is None:
        return None
    return sum(1 for s in samples if graded_right(s, validation))


def graded_right(s: SampleDescription, validation: ValidationSet | None) -> bool | None:
    """The report's grade of the answer (family right and observed RMS within ACCURATE_PCT);
    None when it cannot be graded (no answer, or no evaluation clips)."""
    if validation is None:
        return None
    g = grade_sample(s, validation)
    return None if g is None else g.right


def backend_costs(data: ReportData) -> list[BackendCost]:
    """Per requested backend, in the order first seen; samples without an answer are left out."""
    groups: dict[str, list[SampleDescription]] = defaultdict(list)
    for b in data.branches.values():
        for s in b.samples:
            if not s.error and s.backend_requested:
                groups[s.backend_requested].append(s)
    out = []
    for name, ss in groups.items():
        reached = [s for s in ss if s.llm_attempts > 0]
        priced = bool(reached) and all(s.cost is not None for s in reached)
        lat = [s.latency_ms for s in ss if s.latency_ms is not None and math.isfinite(s.latency_ms)]
        out.append(
            BackendCost(
                backend=name,
                calls=len(ss),
                answered_itself=sum(1 for s in ss if not s.fallback_used),
                llm_calls=sum(s.llm_attempts for s in ss),
                prompt_tokens=sum(s.prompt_tokens for s in ss),
                completion_tokens=sum(s.completion_tokens for s in ss),
                latency_p50_ms=float(np.median(lat)) if lat else None,
                llm_seconds=sum(s.llm_seconds for s in ss),
                priced=priced,
                cost=sum(s.cost or 0.0 for s in reached) if priced else None,
                accurate=_accurate([s for s in ss if not s.fallback_used], data.validation),
            )
        )
    return out


def _money(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4f}"


def _row(c: BackendCost) -> list[str]:
    none_accurate = NOT_GRADED if c.accurate is None else "n/a (no accurate equation)"
    if c.backend == "analytic":
        money, per_accurate = "0 (no language model)", "0"
    elif c.llm_calls == 0:
        money, per_accurate = "n/a (the model was not called)", "n/a"
    elif c.priced:
        money = _money(c.cost)
        per_accurate = _money(c.cost_per_accurate) if c.accurate else none_accurate
    else:
        money = "not priced"
        spa = c.seconds_per_accurate
        per_accurate = f"{spa:.2f} s of model time" if spa is not None else none_accurate
    return [
        c.backend,
        str(c.calls),
        f"{c.answered_itself} of {c.calls}",
        str(c.llm_calls),
        str(c.prompt_tokens),
        str(c.completion_tokens),
        ms(c.latency_p50_ms),
        f"{c.llm_seconds:.2f}",
        money,
        NOT_GRADED if c.accurate is None else f"{c.accurate} of {c.calls}",
        per_accurate,
    ]


def llm_cost_section(data: ReportData) -> Section:
    costs = backend_costs(data)
    intro = Para(
        "What each describer backend spent on the sample equations above. Tokens are the APIs' own "
        "usage figures (OpenAI and vLLM: usage; TGI: generated tokens and the prompt-token header), "
        "over every call to the language model, retries and answers that fell back included. Money "
        "comes from the describer's price table (`TRAJLAB_DESCRIBER_PRICES`, per 1,000 tokens, its "
        "currency); none is built in. A backend without a price, such as a local model on vLLM or "
        "TGI, is shown by the time of its calls, which is the GPU time it held. An equation is "
        "accurate when the \"Equations graded\" section grades it right given the true positions "
        f"(its family is the clip's true one and its RMS error on the observed frames is at most "
        f"{ACCURATE_PCT:g} % of the trajectory's extent), counted only for answers the backend gave "
        "itself."
    )
    if not costs:
        return Section(
            "What each language model costs", "llm-cost", [intro, Para(f"Describe calls: {MISSING}.")]
        )
    table = Table(
        [
            "backend requested",
            "Describe calls",
            "answered by it",
            "model calls",
            "prompt tokens",
            "completion tokens",
            "Describe p50 (ms)",
            "model time (s)",
            "money",
            "accurate equations",
            "cost per accurate equation",
        ],
        [_row(c) for c in costs],
        caption="Cost per describer backend over the report's Describe calls.",
    )
    return Section("What each language model costs", "llm-cost", [intro, table])


def llm_cost_json(data: ReportData) -> list[dict]:
    """The same table for report.json."""
    return [
        {
            **asdict(c),
            "cost_per_accurate": c.cost_per_accurate,
            "seconds_per_accurate": c.seconds_per_accurate,
        }
        for c in backend_costs(data)
    ]

"""The report's cost table per describer backend: calls, tokens, latency, money when priced,
model time when not, and the cost per accurate (right-family) equation."""

from __future__ import annotations

import json

import numpy as np

from services.reporter.model import BranchReport, ReportData, SampleDescription, WinnerDecision
from services.reporter.render.document import build_document
from services.reporter.render.jsondump import report_json
from services.reporter.render.llm_cost import backend_costs
from services.reporter.render.markdown import render_markdown
from trajlab.profiles import CLASS_NAMES


def _sample(backend: str, true: str, described: str, **kw: object) -> SampleDescription:
    base: dict = dict(
        index=0,
        true_class=true,
        predicted_class=true,
        observed=np.zeros((4, 3)),
        truth_future=np.zeros((2, 3)),
        forecast=None,
        true_equations=None,
        backend_requested=backend,
        backend_used=backend,
        described_class=described,
    )
    base.update(kw)
    return SampleDescription(**base)


def _data() -> ReportData:
    gpt = dict(llm_attempts=1, prompt_tokens=300, completion_tokens=100, llm_seconds=1.5)
    samples_b1 = [
        _sample("openai:gpt-4", "linear", "linear", latency_ms=1200.0, cost=0.015, **gpt),
        _sample("openai:gpt-4", "circular", "helical", latency_ms=1400.0, cost=0.015, **gpt),
        # Unusable answer: billed, then analytic answered (right family, but not gpt-4's).
        _sample(
            "openai:gpt-4",
            "helical",
            "helical",
            latency_ms=1600.0,
            cost=0.015,
            backend_used="analytic",
            fallback_used=True,
            **gpt,
        ),
    ]
    local = dict(llm_attempts=1, prompt_tokens=280, completion_tokens=90, llm_seconds=0.8, cost=None)
    samples_b3 = [
        _sample("openai:mistral", "linear", "linear", latency_ms=900.0, **local),
        _sample("openai:mistral", "projectile", "projectile", latency_ms=700.0, **local),
        _sample("analytic", "linear", "linear", latency_ms=3.0),
        _sample("openai:mistral", "linear", "", error="UNAVAILABLE: describer down"),  # not counted
    ]
    branches = {
        "b1": BranchReport(name="b1", trainer_target="x", samples=samples_b1),
        "b3": BranchReport(name="b3", trainer_target="x", samples=samples_b3),
    }
    winner = WinnerDecision(rule="r", rule_text="r", winner="", ranking=[], justification="")
    return ReportData(
        created_at="2026-12-03T00:00:00Z",
        branches=branches,
        class_names=CLASS_NAMES,
        winner=winner,
        missing=[],
        sources={},
        validation=None,
    )


def _rows(md: str) -> dict[str, str]:
    part = md.split("## What each language model costs", 1)[1].split("\n## ", 1)[0]
    return {
        line.split(" | ")[0][2:]: line
        for line in part.splitlines()
        if line.startswith("| ") and "---" not in line
    }


def test_cost_table_per_backend() -> None:
    md = render_markdown(build_document(_data(), []))
    rows = _rows(md)
    # 3 calls, 2 answered by gpt-4 itself; every call billed; 1 accurate equation of its own.
    assert rows["openai:gpt-4"] == (
        "| openai:gpt-4 | 3 | 2 of 3 | 3 | 900 | 300 | 1400.00 | 4.50 | 0.0450 | 1 of 3 | 0.0450 |"
    )
    # Local model: no price, its call time instead (GPU time), per accurate equation.
    assert rows["openai:mistral"] == (
        "| openai:mistral | 2 | 2 of 2 | 2 | 560 | 180 | 800.00 | 1.60 | not priced | 2 of 2 | 0.80 s of model time |"
    )
    assert rows["analytic"].endswith("| 0 (no language model) | 1 of 1 | 0 |")


def test_cost_table_in_report_json() -> None:
    doc = json.loads(report_json(_data()))
    by = {c["backend"]: c for c in doc["llm_cost"]}
    assert by["openai:gpt-4"]["cost"] == 0.045 and by["openai:gpt-4"]["cost_per_accurate"] == 0.045
    assert by["openai:mistral"]["priced"] is False and by["openai:mistral"]["cost"] is None
    assert by["openai:mistral"]["seconds_per_accurate"] == 0.8


def test_a_backend_never_reached_or_never_accurate_says_so() -> None:
    data = _data()
    for s in data.branches["b1"].samples:
        s.described_class = "linear" if s.true_class != "linear" else "circular"  # all wrong
    data.branches["b3"].samples = [
        _sample(
            "openai:phi-2", "linear", "linear", backend_used="analytic", fallback_used=True, latency_ms=2.0
        )
    ]
    rows = _rows(render_markdown(build_document(data, [])))
    assert rows["openai:gpt-4"].endswith("| 0.0450 | 0 of 3 | n/a (no accurate equation) |")
    assert rows["openai:phi-2"].endswith("| n/a (the model was not called) | 0 of 1 | n/a |")
    assert [c.backend for c in backend_costs(data)] == ["openai:gpt-4", "openai:phi-2"]


def test_no_describe_calls_is_missing_not_zero() -> None:
    data = _data()
    for b in data.branches.values():
        b.samples = []
    md = render_markdown(build_document(data, []))
    assert "Describe calls: missing." in md.split("## What each language model costs", 1)[1]

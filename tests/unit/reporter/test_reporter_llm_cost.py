"""The report's cost table per describer backend: calls, tokens, latency, money when priced,
model time when not, and the cost per accurate equation (graded right by the report's equation
grading: family right and RMS within the threshold)."""

from __future__ import annotations

import json

import numpy as np

from services.reporter.equation_grading import grade_sample
from services.reporter.model import BranchReport, ReportData, SampleDescription, ValidationSet, WinnerDecision
from services.reporter.render.document import build_document
from services.reporter.render.jsondump import report_json
from services.reporter.render.llm_cost import backend_costs
from services.reporter.render.markdown import render_markdown
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.profiles import CLASS_NAMES

FRAMES, HORIZON, FPS = 16, 4, 8.0
GEN = TrajectoryGenerator(frames=FRAMES, horizon=HORIZON, fps=FPS)
# The evaluation clips the samples are drawn from: clip i is TRUTH[i].
TRUTH = [GEN.sample(f, np.random.default_rng(i)) for i, f in enumerate(("linear", "circular", "helical", "parabolic"))]


def _validation() -> ValidationSet:
    pos = np.stack([t.positions for t in TRUTH]).astype(np.float32)
    return ValidationSet(
        clips=np.zeros((len(TRUTH), FRAMES, 2, 2, 3), np.uint8),
        labels=np.array([t.label for t in TRUTH]),
        positions=pos,
        times=TRUTH[0].times.astype(np.float32),
        extent=np.ptp(pos, axis=1).max(axis=1),
        fps=FPS,
        class_names=CLASS_NAMES,
        params=[t.params for t in TRUTH],
        split="test",
    )


def _sample(backend: str, true: str, described: str, *, fit: str | None = None, **kw: object) -> SampleDescription:
    """A Describe answer on the clip of family ``true``; its equations are that clip's own (graded
    right) unless ``fit`` names another family (a trajectory of that family: graded wrong)."""
    index = CLASS_NAMES.index(true)
    truth = TRUTH[index]
    eqs = truth.equations if fit is None else GEN.sample(fit, np.random.default_rng(99)).equations
    base: dict = dict(
        index=index,
        true_class=true,
        predicted_class=true,
        observed=truth.positions[:FRAMES],
        truth_future=truth.positions[FRAMES:],
        forecast=None,
        true_equations=truth.equations,
        equations=eqs,
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
        _sample("openai:gpt-4", "circular", "helical", fit="helical", latency_ms=1400.0, cost=0.015, **gpt),
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
        _sample("openai:mistral", "parabolic", "parabolic", latency_ms=700.0, **local),
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
        validation=_validation(),
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
    for s in data.branches["b1"].samples:  # every answer's equations another family's: all wrong
        s.equations = GEN.sample("linear" if s.true_class != "linear" else "circular", np.random.default_rng(7)).equations
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


def test_an_equation_graded_wrong_is_not_accurate_even_when_it_names_the_right_family() -> None:
    """The cost table agrees with the "Equations graded" section: an answer that says "linear" for a
    linear clip but whose equations miss the trajectory (another line) is graded wrong, so it is not an
    accurate equation and the cost per accurate equation has nothing to divide by."""
    data = _data()
    wrong = _sample(
        "openai:gpt-4", "linear", "linear", fit="linear", latency_ms=1000.0, cost=0.02,
        llm_attempts=1, prompt_tokens=10, completion_tokens=10, llm_seconds=1.0,
    )  # fmt: skip
    g = grade_sample(wrong, data.validation)
    assert g is not None and g.family_right and not g.right  # the right family, far from the path
    data.branches = {"b1": BranchReport(name="b1", trainer_target="x", samples=[wrong])}
    (c,) = backend_costs(data)
    assert c.accurate == 0 and c.cost_per_accurate is None
    rows = _rows(render_markdown(build_document(data, [])))
    assert rows["openai:gpt-4"].endswith("| 0.0200 | 0 of 1 | n/a (no accurate equation) |")
    # The same answer with the clip's own equations is graded right and counted.
    data.branches["b1"].samples = [_sample("openai:gpt-4", "linear", "linear", cost=0.02, llm_attempts=1)]
    assert backend_costs(data)[0].accurate == 1


def test_without_the_evaluation_clips_nothing_is_graded() -> None:
    data = _data()
    data.validation = None
    rows = _rows(render_markdown(build_document(data, [])))
    assert rows["openai:gpt-4"].endswith("| 0.0450 | not graded (no evaluation clips) | not graded (no evaluation clips) |")

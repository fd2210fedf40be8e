"""Robustness: the drop's interval, pairing stress clips with their test twins, and the report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.reporter.model import BranchReport, ReportData, ValidationSet, WinnerDecision
from services.reporter.robustness import RobustnessResult, drop_interval, outcome, robustness
from services.reporter.stats import RunOutcome
from trajlab.profiles import CLASS_NAMES


def _clips(n: int, seed: int, frames: int = 4, horizon: int = 2) -> ValidationSet:
    rng = np.random.default_rng(seed)
    return ValidationSet(
        clips=rng.integers(0, 255, size=(n, frames, 8, 8, 3), dtype=np.uint8),
        labels=np.arange(n, dtype=np.int64) % 4,
        positions=rng.normal(size=(n, frames + horizon, 3)).astype(np.float32),
        times=np.arange(frames + horizon, dtype=np.float32) / 8,
        extent=np.full(n, 2.0, dtype=np.float32),
        fps=8.0,
        class_names=CLASS_NAMES,
        split="test",
    )


def _answer(clips: ValidationSet, right: np.ndarray, error: float) -> RunOutcome:
    """An outcome where clip i is classified right where ``right[i]``, forecast off by ``error`` units."""
    pred = np.where(right, clips.labels, (clips.labels + 1) % 4)
    fc = clips.positions[:, clips.frames :] + error
    return outcome("b1", clips, np.arange(len(clips)), pred, fc)


def test_independent_drop_interval_matches_the_textbook_normal_interval() -> None:
    # Two large independent samples: the bootstrap interval of p1 - p2 is the Wald interval.
    n, p1, p2 = 4000, 0.9, 0.8
    a = np.r_[np.ones(int(n * p1)), np.zeros(n - int(n * p1))]
    b = np.r_[np.ones(int(n * p2)), np.zeros(n - int(n * p2))]
    iv = drop_interval(a, b, paired=False)
    half = 1.959964 * np.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    assert iv.mean == pytest.approx(0.1)
    assert iv.low == pytest.approx(0.1 - half, abs=0.003) and iv.high == pytest.approx(0.1 + half, abs=0.003)
    assert "independent" in iv.method


def test_paired_drop_uses_the_clip_by_clip_differences() -> None:
    rng = np.random.default_rng(1)
    test = rng.normal(10, 5, size=300)  # clips differ a lot among themselves ...
    stress = test + 1.0 + rng.normal(0, 0.1, size=300)  # ... but each is 1 point worse under stress
    paired = drop_interval(stress, test, paired=True)
    independent = drop_interval(stress, test, paired=False)
    assert paired.low > 0.95 and paired.high < 1.05  # the pairing removes the clip-to-clip spread
    assert independent.low < 0.5 < 1.5 < independent.high
    assert drop_interval(test, test, paired=True).high == 0.0


def test_stress_clips_showing_the_test_trajectories_are_compared_clip_by_clip() -> None:
    test = _clips(12, seed=0)
    twins = _clips(8, seed=1)
    twins.positions[:] = test.positions[:8]  # the same trajectories in other pixels
    strangers = _clips(8, seed=2)
    right = np.ones(12, dtype=bool)
    t = _answer(test, right, 0.1)
    res = robustness(
        ["b1", "b2"],
        test,
        {"b1": t},
        {"clutter": twins, "unseen_seed": strangers},
        lambda b, clips: _answer(clips, np.arange(len(clips)) % 2 == 0, 0.3),
    )
    clutter, unseen = res.row("b1", "clutter"), res.row("b1", "unseen_seed")
    assert clutter is not None and unseen is not None
    assert clutter.paired and not unseen.paired
    assert clutter.accuracy == 0.5 and clutter.accuracy_drop.mean == pytest.approx(0.5)
    assert clutter.mae_pct == pytest.approx(15.0) and clutter.mae_rise.mean == pytest.approx(10.0)
    assert res.test["b1"] == (12, 1.0, pytest.approx(5.0))
    assert res.missing == {"b2": "no served test-split evaluation"}


def test_a_set_the_encoder_cannot_score_is_missing_with_its_reason() -> None:
    test = _clips(8, seed=0)

    def fail(branch: str, clips: ValidationSet) -> RunOutcome:
        raise ValueError("the encoder answered an unknown class 'blob' for b1")

    res = robustness(["b1"], test, {"b1": _answer(test, np.ones(8, bool), 0.0)}, {"noise": test}, fail)
    assert res.rows == [] and "unknown class 'blob'" in res.missing["b1/noise"]


def _report(robust: RobustnessResult | None) -> ReportData:
    winner = WinnerDecision(rule="r", rule_text="r", winner="", ranking=[], justification="")
    return ReportData(
        created_at="2026-12-03T00:00:00Z",
        branches={"b1": BranchReport(name="b1", trainer_target="x")},
        class_names=CLASS_NAMES,
        winner=winner,
        missing=[],
        sources={},
        validation=None,
        robustness=robust,
    )


def test_the_report_has_a_robustness_table_and_heatmap(tmp_path: Path) -> None:
    from services.reporter.render.document import build_document
    from services.reporter.render.figures import render_figures
    from services.reporter.render.jsondump import report_json
    from services.reporter.render.markdown import render_markdown

    test = _clips(40, seed=0)
    twins = _clips(40, seed=1)
    twins.positions[:] = test.positions
    res = robustness(
        ["b1"],
        test,
        {"b1": _answer(test, np.ones(40, bool), 0.1)},
        {"clutter": twins, "beyond_range": _clips(40, seed=3)},
        lambda b, clips: _answer(clips, np.arange(len(clips)) % 4 != 0, 0.1),
    )
    data = _report(res)
    figs = render_figures(data, tmp_path)
    heat = [f for f in figs if f.key == "robustness_heatmap"]
    assert heat and heat[0].path.is_file() and heat[0].path.stat().st_size > 1000
    md = render_markdown(build_document(data, figs))
    section = md.split("## Robustness", 1)[1].split("\n## ", 1)[0]
    assert "three more static clutter objects" in section  # what each set changes
    rows = [line for line in section.splitlines() if line.startswith("| b1 ")]
    assert rows[0].startswith("| b1 | test split | 40 | 100.00 % |")
    # A 25-point drop on 40 twins: bold (the interval excludes 0); other trajectories: marked *.
    assert rows[1].startswith("| b1 | clutter | 40 | 75.00 % | **+25.0 [")
    assert rows[2].startswith("| b1 | beyond_range * | 40 | 75.00 % |")
    assert "robustness_heatmap.png" in section
    dumped = json.loads(report_json(data))["robustness"]
    assert [r["set"] for r in dumped["rows"]] == ["clutter", "beyond_range"]
    assert dumped["rows"][0]["accuracy_drop"]["value"] == pytest.approx(0.25)


def test_without_stress_sets_there_is_no_robustness_section(tmp_path: Path) -> None:
    from services.reporter.render.document import build_document
    from services.reporter.render.figures import render_figures
    from services.reporter.render.markdown import render_markdown

    data = _report(None)
    figs = render_figures(data, tmp_path)
    assert not [f for f in figs if f.key == "robustness_heatmap"]
    assert "## Robustness" not in render_markdown(build_document(data, figs))


def test_the_reporter_setting_names_an_unknown_set() -> None:
    from services.reporter.settings import ReporterSettings
    from trajlab.config import load_settings
    from trajlab.errors import ConfigError

    assert load_settings(ReporterSettings, stress_sets=" all ").stress_sets == "all"
    with pytest.raises(ConfigError, match="TRAJLAB_REPORTER_STRESS_SETS: unknown stress set 'fog'") as err:
        load_settings(ReporterSettings, stress_sets="clutter,fog")
    assert "--sets" not in str(err.value)  # the reporter's setting, not trajlab stress's option

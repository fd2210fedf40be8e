"""Seed runs grouped into branches for the statistics; a failed seed run is left out and named."""

from __future__ import annotations

import numpy as np

from services.reporter.metrics import compute_metrics
from services.reporter.model import BranchReport, ServedEvaluation, ValidationSet
from services.reporter.outcomes import rule_metric, run_outcome, run_statistics
from trajlab.profiles import CLASS_NAMES

N, T, H = 40, 4, 2


def _val() -> ValidationSet:
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(N, T + H, 3)).astype(np.float32)
    return ValidationSet(
        clips=np.zeros((N, T, 2, 2, 3), np.uint8),
        labels=np.arange(N) % 4,
        positions=pos,
        times=np.arange(T + H, dtype=np.float32),
        extent=np.ptp(pos, axis=1).max(axis=1),
        fps=8.0,
        class_names=CLASS_NAMES,
        split="test",
    )


def _served(val: ValidationSet, wrong: int, offset: float) -> ServedEvaluation:
    pred = val.labels.copy()
    pred[:wrong] = (pred[:wrong] + 1) % 4
    fc = val.positions[:, T:] + offset
    idx = np.arange(N)
    m = compute_metrics(
        labels=val.labels, predictions=pred, truth=val.positions[:, T:], forecast=fc, extent=val.extent, num_classes=4
    )
    return ServedEvaluation(m, 1, pred, fc, np.arange(H, dtype=float), idx, [1.0] * N)


def test_per_clip_outcomes_agree_with_the_reports_metrics() -> None:
    val = _val()
    r = BranchReport("b1@s3", "t", served=_served(val, wrong=5, offset=0.1))
    out = run_outcome(r, val)
    assert (out.branch, out.seed) == ("b1", 3)
    assert out.correct.mean() == r.served.metrics.accuracy
    assert np.isclose(out.mae_pct.mean(), r.served.metrics.forecast_mae_pct)


def test_seed_runs_group_by_branch_and_a_failed_run_is_named() -> None:
    val = _val()
    reports = [
        BranchReport("b1@s0", "t", served=_served(val, 2, 0.05)),
        BranchReport("b1@s1", "t", served=_served(val, 3, 0.05)),
        BranchReport("b2@s0", "t", served=_served(val, 20, 0.3)),
        BranchReport("b2@s1", "t"),
    ]
    reports[3].add_missing("results", "branch failed: loss became NaN at epoch 2")
    st, used, left_out = run_statistics(reports, val, rule_id="accuracy_then_mae", alpha=0.05, power=0.8)
    assert st is not None and set(st.branches) == {"b1", "b2"}
    assert st.branches["b1"].seeds == [0, 1] and st.branches["b2"].seeds == [0]
    assert used == ["b1@s0", "b1@s1", "b2@s0"]
    assert left_out == {"b2@s1": "branch failed: loss became NaN at epoch 2"}
    assert any("left out: b2@s1 (branch failed" in n for n in st.notes)
    assert st.verdict.winner == "b1"
    assert rule_metric("mae_then_accuracy") == "mae" and rule_metric("served_accuracy_then_mae") == "accuracy"


def test_the_ablated_branch_is_compared_paired_with_its_full_self() -> None:
    from services.reporter.model import ReportData, WinnerDecision
    from services.reporter.render.statistics import statistics_section

    val = _val()
    reports = [
        BranchReport("b1@s0", "t", served=_served(val, 2, 0.05)),
        BranchReport("b1-noperc@s0", "t", served=_served(val, 18, 0.4)),
    ]
    st, _, _ = run_statistics(reports, val, rule_id="accuracy_then_mae", alpha=0.05, power=0.8)
    data = ReportData(
        created_at="2026-01-01T00:00:00Z",
        branches={r.name: r for r in reports},
        class_names=CLASS_NAMES,
        winner=WinnerDecision("r", "r", "", [], ""),
        missing=[],
        sources={},
        validation=val,
        stats=st,
    )
    tables = [b for b in statistics_section(data).blocks if hasattr(b, "headers")]
    ablation = next(t for t in tables if "turned off" in t.headers)
    row = ablation.rows[0]
    assert row[:4] == ["b1", "perception", "95.00 % / 55.00 %", "+40.00"]
    assert float(row[4]) < 0.05  # McNemar: 16 clips only the full branch gets right

"""From the collected branch reports to the statistics' input: per-clip outcomes of each finished run.

A report source is a run: a branch (``b1``) or a branch at a training seed (``b1@s2``, see
:mod:`trajlab.runs`). Runs of the same branch are that branch's seeds in the statistics. A
run without a served evaluation (failed, unreachable, not served) is left out, with its reason,
and the report says the statistics use the runs that finished.
"""

from __future__ import annotations

import numpy as np

from services.reporter.model import BranchReport, ValidationSet
from services.reporter.stats import Metric, RunOutcome, StatsResult, compare
from services.reporter.winner import RULES
from trajlab.runs import split_run_name


def rule_metric(rule_id: str) -> Metric:
    """The metric the winner rule ranks on first: accuracy, or forecast MAE."""
    rule = RULES.get(rule_id)
    return "mae" if rule is not None and "mae" in rule.primary[0] else "accuracy"


def run_outcome(report: BranchReport, validation: ValidationSet) -> RunOutcome:
    """Per-clip correctness and forecast MAE (% of extent) of a run's served evaluation."""
    served = report.served
    assert served is not None
    idx = served.indices
    correct = served.predictions == validation.labels[idx]
    truth = validation.positions[idx, validation.frames :].astype(np.float64)
    extent = np.maximum(validation.extent[idx].astype(np.float64), 1e-12)
    # The same definition as metrics.compute_metrics: |error| / extent, averaged over horizon and axes.
    mae_pct = (np.abs(served.forecasts.astype(np.float64) - truth) / extent[:, None, None]).mean(axis=(1, 2))
    branch, seed = split_run_name(report.name)
    return RunOutcome(branch, seed if seed is not None else 0, correct, mae_pct * 100.0, idx)


def run_statistics(
    reports: list[BranchReport],
    validation: ValidationSet | None,
    *,
    rule_id: str,
    alpha: float,
    power: float,
) -> tuple[StatsResult | None, list[str], dict[str, str]]:
    """The statistics over every run with a served evaluation, the runs used and those left out (why)."""
    used: list[str] = []
    left_out: dict[str, str] = {}
    runs: dict[str, list[RunOutcome]] = {}
    for r in reports:
        if r.served is None or validation is None:
            reasons = [m.reason for m in r.missing if m.section in ("trainer", "results", "served model")]
            left_out[r.name] = reasons[0] if reasons else "no served evaluation"
            continue
        out = run_outcome(r, validation)
        runs.setdefault(out.branch, []).append(out)
        used.append(r.name)
    if validation is None:
        return None, used, left_out
    result = compare(runs, metric=rule_metric(rule_id), alpha=alpha, power=power)
    if left_out:
        result.notes.append(
            f"The statistics use the {len(used)} run(s) that finished and were served "
            f"({', '.join(used) or 'none'}); left out: "
            + "; ".join(f"{n} ({why})" for n, why in left_out.items())
            + "."
        )
    return result, used, left_out

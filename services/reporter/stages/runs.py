"""The runs a report covers and what their sources say: status, per-epoch history, results."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from services.reporter.model import BranchReport, Missing
from services.reporter.sources.run_source import RunSource
from services.reporter.stages.base import StageOutput


@dataclass(kw_only=True)
class RunPlan(StageOutput):
    """One ``BranchReport`` per run, in report order (asked-for runs with no source included)."""

    reports: dict[str, BranchReport] = field(default_factory=dict)


@dataclass(kw_only=True)
class RunsFetched(StageOutput):
    """Where each run's per-epoch history came from (status, history, results are in the reports)."""

    history_sources: dict[str, str] = field(default_factory=dict)


def plan_runs(trainers: Mapping[str, RunSource], branches: list[str] | None) -> RunPlan:
    """The runs to report: every source, or the ``branches`` asked for (an unknown one is missing)."""
    names = list(trainers)
    if branches:
        unknown = [b for b in branches if b not in trainers]
        names = [b for b in names if b in branches]
        names += unknown  # an asked-for branch with no trainer is reported as missing, not dropped
    out = RunPlan(
        reports={
            b: BranchReport(name=b, trainer_target=trainers[b].target if b in trainers else "") for b in names
        }
    )
    for b in names:
        if b not in trainers:
            out.reports[b].add_missing("trainer", "no trainer target configured for this branch")
    if not names:
        out.missing.append(
            Missing(
                "branches",
                'no trainers configured (settings: trainers="b1=host:port,..." or runs_dir=<run dirs>)',
            )
        )
    return out


def fetch_runs(trainers: Mapping[str, RunSource], reports: dict[str, BranchReport]) -> RunsFetched:
    """Every run's status, history and results, in parallel: an unreachable trainer costs one
    deadline, not one per run. The results' own warnings become findings."""
    out = RunsFetched()
    live = [b for b in reports if b in trainers]
    if not live:
        return out
    with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
        fetched = dict(zip(live, pool.map(lambda b: trainers[b].fetch(), live), strict=True))
    for b, f in fetched.items():
        r = reports[b]
        r.status, r.history, r.results = f.status, f.history, f.results
        out.history_sources[b] = f.history_source
        r.missing.extend(f.missing)
        if r.results is not None:
            out.notes.extend(f"{b}: {w}" for w in r.results.warnings)
    return out

"""The analyses on the collected answers: the statistics on the served models' per-clip answers
(the test split by default) and the stress sets (when enabled)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.reporter.model import BranchReport, Missing, ValidationSet
from services.reporter.outcomes import run_statistics
from services.reporter.settings import ReporterSettings
from services.reporter.stages.base import StageOutput
from services.reporter.stats import StatsResult

if TYPE_CHECKING:
    from services.reporter.robustness import RobustnessResult


@dataclass(kw_only=True)
class Statistics(StageOutput):
    """The statistics (None without served answers), the runs they use and the runs left out."""

    stats: StatsResult | None = None
    runs: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # run -> why it is not in them


@dataclass(kw_only=True)
class Robustness(StageOutput):
    """The stress sets' results (None when off or not possible; why in ``missing``)."""

    robustness: RobustnessResult | None = None


def statistics(
    reports: dict[str, BranchReport], validation: ValidationSet | None, rule: str, settings: ReporterSettings
) -> Statistics:
    stats, runs, left_out = run_statistics(
        list(reports.values()),
        validation,
        rule_id=rule,
        alpha=settings.stats_alpha,
        power=settings.stats_power,
    )
    return Statistics(stats=stats, runs=runs, left_out=left_out)


def robustness(
    settings: ReporterSettings, reports: dict[str, BranchReport], validation: ValidationSet | None
) -> Robustness:
    """The served models on the stress sets, when ``settings.stress_sets`` asks for them."""
    from services.reporter.robustness import report_robustness

    result, why_not = report_robustness(settings, reports, validation)
    return Robustness(robustness=result, missing=[Missing("robustness", why_not)] if why_not else [])

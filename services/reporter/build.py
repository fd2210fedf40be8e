"""Collect every source into a :class:`ReportData`, render it, write it: ``build_report(sources, settings)``.

Usable without the gRPC server (``trajlab run`` and ``trajlab report`` call it in-process)::

    settings = load_settings(ReporterSettings, trainers="b1=127.0.0.1:50052", encoder_target=...)
    sources = ReportSources.from_settings(settings)
    result = build_report(sources, settings)   # -> ReportResult (paths, winner, summary, missing)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from services.reporter.model import (
    ReportData,
    ReportResult,
    SummaryRow,
    ValidationSet,
)
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import (
    DescriberSource,
    EncoderSource,
    TrainerSource,
)
from services.reporter.sources.prometheus import PrometheusClient, PrometheusSource
from services.reporter.sources.run_source import RunSource
from services.reporter.stages.analysis import robustness, statistics
from services.reporter.stages.base import StageOutput
from services.reporter.stages.clips import load_clips
from services.reporter.stages.curves import check_prometheus, training_curves
from services.reporter.stages.described import describe_samples as describe_samples_stage
from services.reporter.stages.runs import fetch_runs, plan_runs
from services.reporter.stages.served import score_served, serving_latency
from services.reporter.storage import local_reports_dir, local_validation_dir, publish_report
from services.reporter.winner import decide
from trajlab.profiles import CLASS_NAMES

log = logging.getLogger(__name__)

ValidationProvider = Callable[[], ValidationSet]


@dataclass
class ReportSources:
    """Where the report's figures come from. ``None`` = not configured (shown as missing)."""

    trainers: dict[str, RunSource]  # live trainers (gRPC) and finished runs' stored results
    encoder: EncoderSource | None = None
    describer: DescriberSource | None = None
    prometheus: PrometheusSource | None = None
    validation: ValidationProvider | None = None  # loads the validation clips when called
    validation_hint: str = ""  # where validation clips come from, for the report
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: ReporterSettings) -> ReportSources:
        """Sources from the reporter settings (targets, Prometheus URL, data dir)."""
        from services.reporter.sources.validation import load_validation

        timeout = settings.rpc_timeout_seconds
        trainers: dict[str, RunSource] = {
            b: TrainerSource(b, t, timeout_seconds=timeout) for b, t in settings.trainer_targets().items()
        }
        if settings.runs_dir is not None:  # a run given both ways is asked of its live trainer
            from services.reporter.sources.stored_runs import stored_run_sources

            stored = stored_run_sources(settings.runs_dir, settings.run_names())
            trainers.update({n: s for n, s in stored.items() if n not in trainers})
        prom = None
        closers: list[Callable[[], None]] = []
        if settings.prometheus_url:
            client = PrometheusClient(
                settings.prometheus_url, timeout_seconds=settings.prometheus_timeout_seconds
            )
            closers.append(client.close)
            prom = PrometheusSource(client, latency_metric=settings.encoder_latency_metric)
        data_dir = settings.validation_dir()
        return cls(
            trainers=trainers,
            encoder=EncoderSource(settings.encoder_target, timeout_seconds=timeout)
            if settings.encoder_target
            else None,
            describer=DescriberSource(settings.describer_target, timeout_seconds=max(timeout, 30.0))
            if settings.describer_target
            else None,
            prometheus=prom,
            validation=lambda: load_validation(local_validation_dir(settings), settings.eval_split),
            validation_hint=f"{data_dir} ({settings.eval_split} split)",
            _closers=closers,
        )

    def close(self) -> None:
        for c in self._closers:
            with contextlib.suppress(Exception):
                c()

    def describe(self) -> dict[str, str]:
        return {
            "trainers": ", ".join(f"{b}={s.target}" for b, s in self.trainers.items()) or "none configured",
            "encoder": self.encoder.target if self.encoder else "not configured",
            "describer": self.describer.target if self.describer else "not configured",
            "prometheus": self.prometheus.client.base_url if self.prometheus else "not configured",
            "validation clips": self.validation_hint or ("given" if self.validation else "not configured"),
        }


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def collect(
    sources: ReportSources,
    settings: ReporterSettings,
    *,
    branches: list[str] | None = None,
    describe_samples: int | None = None,
    winner_rule: str | None = None,
) -> ReportData:
    """Query every source and assemble the report's data; failures become ``Missing`` entries.

    The stages run in this order (each in ``services/reporter/stages/``); every stage writes its
    per-run figures into the runs' ``BranchReport`` and returns its report-wide gaps and findings.
    """
    n_samples = settings.describe_samples if describe_samples is None else describe_samples
    rule = winner_rule or settings.winner_rule
    created = _utc_now()
    plan = plan_runs(sources.trainers, branches)
    reports = plan.reports
    runs = fetch_runs(sources.trainers, reports)
    prom = check_prometheus(sources.prometheus)
    curves = training_curves(prom, reports, runs.history_sources)
    clips = load_clips(sources.validation, reports)
    validation = clips.validation
    served = score_served(
        sources.encoder, validation, reports, prom,
        max_clips=settings.eval_max_clips, settle_seconds=settings.prometheus_settle_seconds,
    )
    latency = serving_latency(prom, reports, served.counts_before, settings.prometheus_settle_seconds)
    described = describe_samples_stage(
        sources.describer, validation, reports, n_samples, encoder_reason=served.encoder_reason
    )
    stats = statistics(reports, validation, rule, settings)
    verdict = stats.stats.verdict if stats.stats is not None else None
    decision = decide(list(reports.values()), rule, tied=verdict.tied if verdict is not None else None)
    robust = robustness(settings, reports, validation)
    stages: list[StageOutput] = [plan, runs, prom, curves, clips, served, latency, described, stats, robust]
    return ReportData(
        created_at=created.isoformat().replace("+00:00", "Z"),
        branches=reports,
        class_names=validation.class_names if validation is not None else CLASS_NAMES,
        winner=decision,
        missing=[m for s in stages for m in s.missing],
        sources=sources.describe(),
        validation=validation,
        describer_backends=described.backends,
        notes=[n for s in stages for n in s.notes],
        stats=stats.stats,
        stats_runs=stats.runs,
        stats_left_out=stats.left_out,
        robustness=robust.robustness,
    )


def summary_rows(data: ReportData) -> list[SummaryRow]:
    rows = []
    for b, r in data.branches.items():
        reasons = [m.reason for m in r.missing if m.section in ("trainer", "results")]
        rows.append(
            SummaryRow(
                branch=b,
                accuracy=r.results.accuracy if r.results is not None else None,
                forecast_mae_pct=r.results.forecast_mae_pct if r.results is not None else None,
                meets_criteria=bool(r.meets_criteria()),
                equation_accuracy=r.equation_accuracy(),
                served_accuracy=r.served.metrics.accuracy if r.served is not None else None,
                missing_reason="; ".join(reasons),
                served_forecast_mae_pct=r.served.metrics.forecast_mae_pct if r.served is not None else None,
                evaluation_split=data.validation.split if data.validation is not None else "",
            )
        )
    return rows


def _report_dir(root: Path, when: datetime) -> Path:
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 1000):
        d = root / (stamp if i == 1 else f"{stamp}-{i}")
        try:
            d.mkdir()
        except FileExistsError:
            continue
        return d
    raise RuntimeError(f"could not create a report directory under {root}")


def write_report(data: ReportData, reports_dir: Path) -> ReportResult:
    """Render figures, markdown, HTML and JSON into ``reports_dir/<UTC stamp>/``."""
    from services.reporter.render.document import build_document
    from services.reporter.render.figures import render_figures
    from services.reporter.render.html import render_html
    from services.reporter.render.jsondump import report_json
    from services.reporter.render.markdown import render_markdown

    when = datetime.fromisoformat(data.created_at.replace("Z", "+00:00"))
    # Absolute, so figure paths resolve the same wherever they are read from (cwd-relative
    # reports_dir, e.g. `make run`, once joined them twice).
    out = _report_dir(Path(reports_dir).resolve(), when)
    figures = render_figures(data, out)
    doc = build_document(data, figures)
    md_path = out / "PARALLEL_RESULTS_COMPARISON.md"
    md_path.write_text(render_markdown(doc), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(render_html(doc, out), encoding="utf-8")
    json_path = out / "report.json"
    json_path.write_text(report_json(data), encoding="utf-8")
    log.info("report written to %s (winner: %s)", out, data.winner.winner or "none")
    return ReportResult(
        report_dir=out,
        markdown_path=md_path,
        html_path=html_path,
        json_path=json_path,
        figure_paths=[f.path for f in figures],
        winner=data.winner.winner,
        winner_rule=data.winner.rule_text,
        justification=data.winner.justification,
        summary=summary_rows(data),
        missing=data.all_missing(),
        verdict=data.stats.verdict.headline if data.stats is not None else "",
        verdict_reason=data.stats.verdict.reason if data.stats is not None else "",
    )


def build_report(
    sources: ReportSources,
    settings: ReporterSettings,
    *,
    branches: list[str] | None = None,
    describe_samples: int | None = None,
    winner_rule: str | None = None,
) -> ReportResult:
    """Collect every source, render and write the report; returns where it is and what it says."""
    data = collect(
        sources, settings, branches=branches, describe_samples=describe_samples, winner_rule=winner_rule
    )
    result = write_report(data, local_reports_dir(settings))
    publish_report(settings, result.report_dir)  # a bucket reports_dir: uploaded as one unit
    return result

"""Collect every source into a :class:`ReportData`, render it, write it: ``build_report(sources, settings)``.

Usable without the gRPC server (``trajlab run`` and ``trajlab report`` call it in-process)::

    settings = load_settings(ReporterSettings, trainers="b1=127.0.0.1:50052", encoder_target=...)
    sources = ReportSources.from_settings(settings)
    result = build_report(sources, settings)   # -> ReportResult (paths, winner, summary, missing)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from services.reporter.metrics import percentile_ms
from services.reporter.model import (
    BranchReport,
    Curves,
    Latency,
    Missing,
    ReportData,
    ReportResult,
    SummaryRow,
    ValidationSet,
)
from services.reporter.outcomes import run_statistics
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import (
    DescriberSource,
    EncoderSource,
    TrainerSource,
    rpc_reason,
)
from services.reporter.sources.prometheus import PrometheusClient, PrometheusError, PrometheusSource
from services.reporter.sources.run_source import RunSource
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


def _history_curves(history: list, source: str = "trainer GetHistory") -> Curves:
    return Curves(
        epochs=[int(e.epoch) for e in history],
        series={
            "train_loss": [e.train_loss for e in history],
            "val_loss": [e.val_loss for e in history],
            "val_accuracy": [e.val_accuracy for e in history],
            "forecast_mae_pct": [e.forecast_mae_pct for e in history],
        },
        source=source,
    )


def _curve_disagreement(prom: Curves, history: list) -> float:
    """Largest relative difference between Prometheus and trainer-history values on shared epochs."""
    by_epoch = {int(e.epoch): e for e in history}
    worst = 0.0
    for i, ep in enumerate(prom.epochs):
        h = by_epoch.get(ep)
        if h is None:
            continue
        for key, values in prom.series.items():
            v, ref = values[i], float(getattr(h, key))
            if math.isfinite(v):
                worst = max(worst, abs(v - ref) / max(abs(ref), 1e-9))
    return worst


def select_samples(labels: np.ndarray, candidates: np.ndarray, n: int) -> list[int]:
    """Up to n validation indices from candidates, cycling through the classes (first clip of each, ...)."""
    if n <= 0 or len(candidates) == 0:
        return []
    by_class: dict[int, list[int]] = {}
    for i in candidates:
        by_class.setdefault(int(labels[int(i)]), []).append(int(i))
    out: list[int] = []
    rank = 0
    while len(out) < n and any(rank < len(v) for v in by_class.values()):
        for c in sorted(by_class):
            if rank < len(by_class[c]) and len(out) < n:
                out.append(by_class[c][rank])
        rank += 1
    return out


def _eval_indices(n: int, max_clips: int) -> np.ndarray:
    if max_clips <= 0 or max_clips >= n:
        return np.arange(n, dtype=np.int64)
    # Evenly spread over the split so every class stays represented.
    return np.unique(np.round(np.linspace(0, n - 1, max_clips)).astype(np.int64))


def collect(
    sources: ReportSources,
    settings: ReporterSettings,
    *,
    branches: list[str] | None = None,
    describe_samples: int | None = None,
    winner_rule: str | None = None,
) -> ReportData:
    """Query every source and assemble the report's data; failures become ``Missing`` entries."""
    names = list(sources.trainers)
    if branches:
        unknown = [b for b in branches if b not in sources.trainers]
        names = [b for b in names if b in branches]
        names += unknown  # an asked-for branch with no trainer is reported as missing, not dropped
    n_samples = settings.describe_samples if describe_samples is None else describe_samples
    rule = winner_rule or settings.winner_rule
    created = _utc_now()
    report_missing: list[Missing] = []
    notes: list[str] = []
    reports = {
        b: BranchReport(name=b, trainer_target=sources.trainers[b].target if b in sources.trainers else "")
        for b in names
    }
    for b in names:
        if b not in sources.trainers:
            reports[b].add_missing("trainer", "no trainer target configured for this branch")
    if not names:
        report_missing.append(
            Missing(
                "branches",
                'no trainers configured (settings: trainers="b1=host:port,..." or runs_dir=<run dirs>)',
            )
        )

    # 1. Trainers, in parallel: an unreachable one costs one deadline, not one per branch.
    live = [b for b in names if b in sources.trainers]
    history_sources: dict[str, str] = {}
    if live:
        with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
            fetched = dict(zip(live, pool.map(lambda b: sources.trainers[b].fetch(), live), strict=True))
        for b, f in fetched.items():
            r = reports[b]
            r.status, r.history, r.results = f.status, f.history, f.results
            history_sources[b] = f.history_source
            r.missing.extend(f.missing)
            if r.results is not None:
                for w in r.results.warnings:
                    notes.append(f"{b}: {w}")

    # 2. Prometheus: curves and serving latency.
    prom = sources.prometheus
    prom_reason = ""
    if prom is None:
        prom_reason = "no Prometheus configured"
    else:
        try:
            prom.client.ready()
        except PrometheusError as exc:
            prom_reason = str(exc)
            report_missing.append(Missing("prometheus", prom_reason))
            prom = None
    for b in names:
        r = reports[b]
        curves: Curves | None = None
        if prom is not None:
            try:
                curves = prom.training_curves(b)
            except PrometheusError as exc:
                prom_note = f"Prometheus: {exc}"
            else:
                prom_note = ""
                n_hist = len(r.history or [])
                if r.history and len(curves.epochs) < n_hist:
                    prom_note = (
                        f"Prometheus sampled {len(curves.epochs)} of {n_hist} epochs (an epoch shorter than "
                        "the scrape interval is not seen)"
                    )
                    curves = None
                elif r.history:
                    worst = _curve_disagreement(curves, r.history)
                    if worst > 1e-4:
                        notes.append(
                            f"{b}: training curves from Prometheus differ from the trainer's history "
                            f"by up to "
                            f"{worst * 100:.2f} % (relative)"
                        )
        else:
            prom_note = prom_reason
        if curves is None and r.history:
            curves = _history_curves(r.history, history_sources.get(b, "trainer GetHistory"))
            curves.note = prom_note
        if curves is None:
            reason = prom_note if prom is not None else "no training history"
            if any(m.section == "trainer" for m in r.missing):
                reason = next(m.reason for m in r.missing if m.section == "trainer")
            r.add_missing("training curves", reason)
        r.curves = curves

    # 3. Validation clips (for the served-model evaluation and the describer samples).
    validation: ValidationSet | None = None
    if sources.validation is None:
        report_missing.append(Missing("validation clips", "no validation clips configured"))
    else:
        try:
            validation = sources.validation()
        except Exception as exc:  # any load failure is a reason to show, not a crash
            report_missing.append(
                Missing(
                    "validation clips", f"could not load the evaluation clips: {type(exc).__name__}: {exc}"
                )
            )
    if validation is not None:
        for b in names:
            res = reports[b].results
            if (
                res is not None
                and res.dataset_manifest_sha256
                and validation.manifest_sha256
                and (res.dataset_manifest_sha256 != validation.manifest_sha256)
            ):
                notes.append(
                    f"{b}: trained on dataset {res.dataset_manifest_sha256[:12]}, but the reporter's "
                    f"validation "
                    f"clips come from dataset {validation.manifest_sha256[:12]}"
                )

    # 4. The served models through the encoder.
    enc = sources.encoder
    enc_reason = ""
    served_versions: dict[str, list[int]] = {}
    if enc is None:
        enc_reason = "no encoder configured"
    elif validation is None:
        enc_reason = "no validation clips to evaluate"
    else:
        try:
            for m in enc.list_models():
                served_versions.setdefault(m.model.branch, []).append(int(m.model.version))
        except grpc.RpcError as exc:
            enc_reason = f"encoder at {enc.target} unreachable ({rpc_reason(exc)})"
    if enc_reason:
        report_missing.append(Missing("served model", enc_reason))
    counts_before: dict[str, float | None] = {}
    if enc is not None and validation is not None and not enc_reason:
        indices = _eval_indices(len(validation), settings.eval_max_clips)
        for b in names:
            r = reports[b]
            if r.results is None and any(m.section == "results" for m in r.missing):
                # A run that did not finish is not scored, even if an older model of it is served.
                reason = next(m.reason for m in r.missing if m.section == "results")
                r.add_missing("served model", f"run not finished ({reason})")
                continue
            if b not in served_versions:
                loaded = ", ".join(f"{k} v{max(v)}" for k, v in sorted(served_versions.items())) or "none"
                r.add_missing("served model", f"encoder serves no model for {b} (loaded: {loaded})")
                continue
            if prom is not None and settings.prometheus_settle_seconds > 0:
                with contextlib.suppress(PrometheusError):
                    counts_before[b] = prom.request_count(b)
            try:
                r.served = enc.evaluate(b, validation, indices)
            except (grpc.RpcError, ValueError) as exc:
                reason = rpc_reason(exc) if isinstance(exc, grpc.RpcError) else str(exc)
                r.add_missing("served model", f"Analyze through the encoder failed: {reason}")
                continue
            lat = r.served.client_latency_ms
            r.client_latency = Latency(
                p50_ms=percentile_ms(lat, 50),
                p99_ms=percentile_ms(lat, 99),
                requests=float(len(lat)),
                source="reporter client (Analyze round trip, one call at a time)",
            )
            if (
                r.results is not None
                and r.results.model_version
                and r.served.model_version != r.results.model_version
            ):
                notes.append(
                    f"{b}: the encoder served version {r.served.model_version}, the trainer evaluated "
                    f"version "
                    f"{r.results.model_version}"
                )

    # 5. Serving latency from the encoder's histogram (after our own calls, when asked to wait).
    if prom is not None and settings.prometheus_settle_seconds > 0 and counts_before:
        _wait_for_scrape(prom, reports, counts_before, settings.prometheus_settle_seconds)
    for b in names:
        r = reports[b]
        if prom is None:
            r.add_missing("serving latency", prom_reason)
            continue
        try:
            r.latency = prom.latency(b)
        except PrometheusError as exc:
            r.add_missing("serving latency", str(exc))

    # 6. Sample trajectories through the describer.
    describer_backends: list[dict] = []
    desc = sources.describer
    if n_samples > 0:
        desc_reason = ""
        if desc is None:
            desc_reason = "no describer configured"
        elif validation is None:
            desc_reason = "no validation clips to describe"
        else:
            try:
                lb = desc.list_backends()
                describer_backends = [
                    MessageToDict(
                        x, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                    )
                    for x in lb.backends
                ]
            except grpc.RpcError as exc:
                desc_reason = f"describer at {desc.target} unreachable ({rpc_reason(exc)})"
        if desc_reason:
            report_missing.append(Missing("equations", desc_reason))
        else:
            assert desc is not None and validation is not None
            encoder_down = enc is None or bool(enc_reason)
            for b in names:
                r = reports[b]
                if r.served is None and not encoder_down:
                    # The encoder is up but has no forecast for this branch: describing the observed
                    # positions alone would not be this branch's answer.
                    r.add_missing("equations", "no served model of this branch to forecast with")
                    continue
                pool = r.served.indices if r.served is not None else np.arange(len(validation))
                for idx in select_samples(validation.labels, pool, n_samples):
                    pred = fc = fct = None
                    if r.served is not None:
                        pos = int(np.nonzero(r.served.indices == idx)[0][0])
                        pred = int(r.served.predictions[pos])
                        fc = r.served.forecasts[pos]
                        fct = r.served.forecast_times
                    r.samples.append(
                        desc.describe(
                            b, validation, idx, predicted_class=pred, forecast=fc, forecast_times=fct
                        )
                    )
                    if r.served is not None and r.served.tracks is not None:  # pixels to equation
                        conf = r.served.track_confidence
                        r.track_samples.append(desc.describe(
                            b, validation, idx, predicted_class=pred, forecast=fc, forecast_times=fct,
                            track=r.served.tracks[pos], track_confidence=None if conf is None else conf[pos],
                        ))
                failed = [s for s in r.samples if s.error]
                if failed and len(failed) == len(r.samples):
                    r.add_missing("equations", f"every Describe call failed ({failed[0].error})")
                if r.served is None and r.samples:
                    notes.append(
                        f"{b}: trajectories described from observed positions only (no encoder: {enc_reason})"
                    )

    decision = decide([reports[b] for b in names], rule)
    # 7. Statistics on the served models' per-clip answers (the test split by default).
    stats, stats_runs, stats_left_out = run_statistics(
        [reports[b] for b in names],
        validation,
        rule_id=rule,
        alpha=settings.stats_alpha,
        power=settings.stats_power,
    )
    # 8. Robustness: the served models on the stress sets, when enabled (settings.stress_sets).
    from services.reporter.robustness import report_robustness

    robustness, why_not = report_robustness(settings, reports, validation)
    if why_not:
        report_missing.append(Missing("robustness", why_not))
    return ReportData(
        created_at=created.isoformat().replace("+00:00", "Z"),
        branches=reports,
        class_names=validation.class_names if validation is not None else CLASS_NAMES,
        winner=decision,
        missing=report_missing,
        sources=sources.describe(),
        validation=validation,
        describer_backends=describer_backends,
        notes=notes,
        stats=stats,
        stats_runs=stats_runs,
        stats_left_out=stats_left_out,
        robustness=robustness,
    )


def _wait_for_scrape(
    prom: PrometheusSource,
    reports: dict[str, BranchReport],
    before: dict[str, float | None],
    timeout: float,
) -> None:
    """Wait until Prometheus has scraped the encoder after our evaluation calls (bounded by timeout)."""
    want = {
        b: (before[b] or 0.0) + len(reports[b].served.client_latency_ms)
        for b in before
        if reports[b].served is not None
    }
    deadline = time.monotonic() + timeout
    while want and time.monotonic() < deadline:
        for b in list(want):
            try:
                now = prom.request_count(b)
            except PrometheusError:
                now = None
            if now is not None and now >= want[b]:
                del want[b]
        if want:
            time.sleep(0.5)
    for b in want:
        log.warning("Prometheus did not scrape %s's evaluation calls within %.0f s", b, timeout)


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

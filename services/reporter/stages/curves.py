"""Prometheus's readiness and each run's training curves (Prometheus when it saw every epoch,
else the run's own history)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.reporter.model import BranchReport, Curves, Missing
from services.reporter.sources.prometheus import PrometheusError, PrometheusSource
from services.reporter.stages.base import StageOutput


@dataclass(kw_only=True)
class PrometheusState(StageOutput):
    """The Prometheus to ask (None: not configured or not ready) and why not."""

    source: PrometheusSource | None = None
    reason: str = ""  # why there is no source ("" when there is one)


def check_prometheus(prom: PrometheusSource | None) -> PrometheusState:
    """Whether the configured Prometheus answers; an unready one is a report-wide gap."""
    if prom is None:
        return PrometheusState(reason="no Prometheus configured")
    try:
        prom.client.ready()
    except PrometheusError as exc:
        return PrometheusState(reason=str(exc), missing=[Missing("prometheus", str(exc))])
    return PrometheusState(source=prom)


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


def _prometheus_curves(
    prom: PrometheusSource, r: BranchReport, out: StageOutput
) -> tuple[Curves | None, str]:
    """Prometheus's curves of ``r`` when they hold every epoch of its history, else None and why."""
    try:
        curves = prom.training_curves(r.name)
    except PrometheusError as exc:
        return None, f"Prometheus: {exc}"
    n_hist = len(r.history or [])
    if r.history and len(curves.epochs) < n_hist:
        return None, (
            f"Prometheus sampled {len(curves.epochs)} of {n_hist} epochs (an epoch shorter than "
            "the scrape interval is not seen)"
        )
    if r.history:
        worst = _curve_disagreement(curves, r.history)
        if worst > 1e-4:
            out.notes.append(
                f"{r.name}: training curves from Prometheus differ from the trainer's history "
                f"by up to "
                f"{worst * 100:.2f} % (relative)"
            )
    return curves, ""


def training_curves(
    prom: PrometheusState, reports: dict[str, BranchReport], history_sources: dict[str, str]
) -> StageOutput:
    """Each run's ``curves``, or a gap saying why it has none."""
    out = StageOutput()
    for b, r in reports.items():
        curves: Curves | None = None
        if prom.source is not None:
            curves, prom_note = _prometheus_curves(prom.source, r, out)
        else:
            prom_note = prom.reason
        if curves is None and r.history:
            curves = _history_curves(r.history, history_sources.get(b, "trainer GetHistory"))
            curves.note = prom_note
        if curves is None:
            reason = prom_note if prom.source is not None else "no training history"
            if any(m.section == "trainer" for m in r.missing):
                reason = next(m.reason for m in r.missing if m.section == "trainer")
            r.add_missing("training curves", reason)
        r.curves = curves
    return out

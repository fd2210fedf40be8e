"""The served models scored on the evaluation clips through the encoder's Analyze RPC, and their
serving latency (the encoder's histogram in Prometheus; the reporter's own timing of those calls)."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from services.reporter.metrics import percentile_ms
from services.reporter.model import BranchReport, Latency, Missing, ValidationSet
from services.reporter.sources.grpc_sources import EncoderSource, rpc_reason
from services.reporter.sources.prometheus import PrometheusError, PrometheusSource
from services.reporter.stages.base import StageOutput
from services.reporter.stages.curves import PrometheusState

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class ServedScored(StageOutput):
    """Why the encoder scored nothing ("" when it was asked), and the runs' request counts in
    Prometheus before the reporter's calls (to wait for their scrape)."""

    encoder_reason: str = ""
    counts_before: dict[str, float | None] = field(default_factory=dict)

    @property
    def encoder_down(self) -> bool:
        return bool(self.encoder_reason)


def eval_indices(n: int, max_clips: int) -> np.ndarray:
    """The clips to score: all, or ``max_clips`` evenly spread over the split."""
    if max_clips <= 0 or max_clips >= n:
        return np.arange(n, dtype=np.int64)
    # Evenly spread over the split so every class stays represented.
    return np.unique(np.round(np.linspace(0, n - 1, max_clips)).astype(np.int64))


def _served_versions(
    enc: EncoderSource | None, validation: ValidationSet | None
) -> tuple[dict[str, list[int]], str]:
    """The versions the encoder serves per branch, or why it cannot score."""
    served: dict[str, list[int]] = {}
    if enc is None:
        return served, "no encoder configured"
    if validation is None:
        return served, "no validation clips to evaluate"
    try:
        for m in enc.list_models():
            served.setdefault(m.model.branch, []).append(int(m.model.version))
    except grpc.RpcError as exc:
        return served, f"encoder at {enc.target} unreachable ({rpc_reason(exc)})"
    return served, ""


def _why_not_scored(r: BranchReport, served_versions: dict[str, list[int]]) -> str:
    """Why run ``r`` is not scored through the encoder ("" when it is)."""
    if r.results is None and any(m.section == "results" for m in r.missing):
        # A run that did not finish is not scored, even if an older model of it is served.
        reason = next(m.reason for m in r.missing if m.section == "results")
        return f"run not finished ({reason})"
    if r.name not in served_versions:
        loaded = ", ".join(f"{k} v{max(v)}" for k, v in sorted(served_versions.items())) or "none"
        return f"encoder serves no model for {r.name} (loaded: {loaded})"
    return ""


def score_served(
    enc: EncoderSource | None,
    validation: ValidationSet | None,
    reports: dict[str, BranchReport],
    prom: PrometheusState,
    *,
    max_clips: int,
    settle_seconds: float,
) -> ServedScored:
    """Every finished run's served model on the clips (``r.served``, ``r.client_latency``)."""
    served_versions, reason = _served_versions(enc, validation)
    out = ServedScored(encoder_reason=reason)
    if reason:
        out.missing.append(Missing("served model", reason))
        return out
    assert enc is not None and validation is not None
    indices = eval_indices(len(validation), max_clips)
    for b, r in reports.items():
        why_not = _why_not_scored(r, served_versions)
        if why_not:
            r.add_missing("served model", why_not)
            continue
        if prom.source is not None and settle_seconds > 0:
            with contextlib.suppress(PrometheusError):
                out.counts_before[b] = prom.source.request_count(b)
        try:
            r.served = enc.evaluate(b, validation, indices)
        except (grpc.RpcError, ValueError) as exc:
            why = rpc_reason(exc) if isinstance(exc, grpc.RpcError) else str(exc)
            r.add_missing("served model", f"Analyze through the encoder failed: {why}")
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
            out.notes.append(
                f"{b}: the encoder served version {r.served.model_version}, the trainer evaluated "
                f"version "
                f"{r.results.model_version}"
            )
    return out


def serving_latency(
    prom: PrometheusState,
    reports: dict[str, BranchReport],
    counts_before: dict[str, float | None],
    settle_seconds: float,
) -> StageOutput:
    """Each run's ``latency`` from the encoder's histogram, after Prometheus scraped the reporter's
    own calls when asked to wait (``settle_seconds``)."""
    if prom.source is not None and settle_seconds > 0 and counts_before:
        _wait_for_scrape(prom.source, reports, counts_before, settle_seconds)
    for r in reports.values():
        if prom.source is None:
            r.add_missing("serving latency", prom.reason)
            continue
        try:
            r.latency = prom.source.latency(r.name)
        except PrometheusError as exc:
            r.add_missing("serving latency", str(exc))
    return StageOutput()


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

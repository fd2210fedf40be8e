"""Sample trajectories per run through the describer, from the true observed positions and, when
the served model exports its track, from that track ("pixels to equation")."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from services.reporter.model import BranchReport, Missing, ValidationSet
from services.reporter.sources.grpc_sources import DescriberSource, rpc_reason
from services.reporter.stages.base import StageOutput


@dataclass(kw_only=True)
class SamplesDescribed(StageOutput):
    """The describer's backends as it listed them (the runs' answers are in their reports)."""

    backends: list[dict] = field(default_factory=list)


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


def _list_backends(desc: DescriberSource | None, validation: ValidationSet | None) -> tuple[list[dict], str]:
    """The describer's backends, or why it cannot be asked."""
    if desc is None:
        return [], "no describer configured"
    if validation is None:
        return [], "no validation clips to describe"
    try:
        lb = desc.list_backends()
    except grpc.RpcError as exc:
        return [], f"describer at {desc.target} unreachable ({rpc_reason(exc)})"
    return [
        MessageToDict(x, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        for x in lb.backends
    ], ""


def _describe_run(desc: DescriberSource, validation: ValidationSet, r: BranchReport, n: int) -> None:
    """Up to ``n`` clips of ``r`` described (``r.samples``, and ``r.track_samples`` from its track)."""
    pool = r.served.indices if r.served is not None else np.arange(len(validation))
    for idx in select_samples(validation.labels, pool, n):
        pred = fc = fct = None
        if r.served is not None:
            pos = int(np.nonzero(r.served.indices == idx)[0][0])
            pred = int(r.served.predictions[pos])
            fc = r.served.forecasts[pos]
            fct = r.served.forecast_times
        r.samples.append(
            desc.describe(r.name, validation, idx, predicted_class=pred, forecast=fc, forecast_times=fct)
        )
        if r.served is not None and r.served.tracks is not None:  # pixels to equation
            conf = r.served.track_confidence
            r.track_samples.append(
                desc.describe(
                    r.name,
                    validation,
                    idx,
                    predicted_class=pred,
                    forecast=fc,
                    forecast_times=fct,
                    track=r.served.tracks[pos],
                    track_confidence=None if conf is None else conf[pos],
                )
            )


def describe_samples(
    desc: DescriberSource | None,
    validation: ValidationSet | None,
    reports: dict[str, BranchReport],
    n: int,
    *,
    encoder_reason: str,
) -> SamplesDescribed:
    """``n`` sample clips per run through the describer (none when ``n`` is 0). ``encoder_reason``:
    why the encoder scored nothing ("" when it was up)."""
    if n <= 0:
        return SamplesDescribed()
    backends, reason = _list_backends(desc, validation)
    if reason:
        return SamplesDescribed(missing=[Missing("equations", reason)])
    assert desc is not None and validation is not None
    out = SamplesDescribed(backends=backends)
    for b, r in reports.items():
        if r.served is None and not encoder_reason:
            # The encoder is up but has no forecast for this branch: describing the observed
            # positions alone would not be this branch's answer.
            r.add_missing("equations", "no served model of this branch to forecast with")
            continue
        _describe_run(desc, validation, r, n)
        failed = [s for s in r.samples if s.error]
        if failed and len(failed) == len(r.samples):
            r.add_missing("equations", f"every Describe call failed ({failed[0].error})")
        if r.served is None and r.samples:
            out.notes.append(
                f"{b}: trajectories described from observed positions only (no encoder: {encoder_reason})"
            )
    return out

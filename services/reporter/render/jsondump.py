"""Machine-readable report.json: the collected figures, for scripts and for checking the markdown."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from google.protobuf.json_format import MessageToDict

from services.reporter.costs import branch_costs
from services.reporter.model import ReportData
from services.reporter.render.llm_cost import llm_cost_json


def _msg(m: Any) -> dict[str, Any] | None:
    if m is None:
        return None
    return MessageToDict(m, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def report_json(data: ReportData) -> str:
    branches = {}
    for name, b in data.branches.items():
        served = None
        if b.served is not None:
            m = b.served.metrics
            served = {
                "model_version": b.served.model_version,
                "samples": m.samples,
                "accuracy": m.accuracy,
                "mean_class_accuracy": m.mean_class_accuracy,
                "confusion": m.confusion,
                "per_class_accuracy": m.per_class_accuracy,
                "forecast_mae": m.forecast_mae,
                "forecast_rmse": m.forecast_rmse,
                "forecast_mae_pct": m.forecast_mae_pct,
                "forecast_rmse_pct": m.forecast_rmse_pct,
                "ade": m.ade,
                "fde": m.fde,
            }
        branches[name] = {
            "trainer_target": b.trainer_target,
            "status": _msg(b.status),
            "results": _msg(b.results),
            "history": [_msg(e) for e in b.history] if b.history is not None else None,
            "curves": None
            if b.curves is None
            else {
                "source": b.curves.source,
                "note": b.curves.note,
                "epochs": b.curves.epochs,
                "series": b.curves.series,
            },
            "served": served,
            "latency": None if b.latency is None else vars(b.latency),
            "client_latency": None if b.client_latency is None else vars(b.client_latency),
            "meets_criteria": b.meets_criteria(),
            "equation_accuracy": b.equation_accuracy(),
            "samples": [
                {k: v for k, v in vars(s).items() if k not in ("observed", "truth_future", "forecast")}
                for s in b.samples
            ],
            "missing": [vars(m) for m in b.missing],
        }
    doc = {
        "created_at": data.created_at,
        "winner": vars(data.winner),
        "sources": data.sources,
        "branches": branches,
        "missing": [vars(m) for m in data.all_missing()],
        "notes": data.notes,
        "describer_backends": data.describer_backends,
        "llm_cost": llm_cost_json(data),
        "statistics": _stats(data),
        "robustness": data.robustness.to_dict() if data.robustness is not None else None,
        "cost": [asdict(c) for c in branch_costs(data)],  # per branch, services/reporter/costs.py
    }
    return json.dumps(_clean(doc), indent=2, default=str, allow_nan=False) + "\n"


def _stats(data: ReportData) -> dict[str, Any] | None:
    st = data.stats
    if st is None:
        return None
    return {
        "alpha": st.alpha,
        "metric": st.metric,
        "split": data.validation.split if data.validation is not None else "",
        "verdict": {**asdict(st.verdict), "headline": st.verdict.headline},
        "branches": {b: asdict(s) for b, s in st.branches.items()},
        "pairs": [asdict(p) for p in st.pairs],
        "resolution": asdict(st.resolution) if st.resolution is not None else None,
        "runs_used": data.stats_runs,
        "runs_left_out": data.stats_left_out,
        "notes": st.notes,
    }


def _clean(v: Any) -> Any:
    """NaN and infinity are not JSON: a missing value becomes null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v

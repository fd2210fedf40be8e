"""Cost beside quality, per branch: what each branch costs to train and to serve, and its test accuracy.

A report source is a run (``b1`` or ``b1@s2``, :mod:`trajlab.runs`); a branch's figures
are the mean over its runs that have them, like the statistics. Where the figures come from:

- parameters, FLOPs per clip, training wall time and training CPU-seconds: the trainer's
  results (``services/trainer/cost.py``). Results from before FLOPs or CPU time were counted
  do not carry them (``HasField`` is false) and read "not measured"; so do zero parameters or
  training seconds, which the older results left at 0.
- served p50/p99 latency: the encoder's ``trajlab_encoder_inference_seconds`` histogram in
  Prometheus when it answered for the run; otherwise the reporter's own timing of the
  Analyze calls it made, one at a time, to score the run on the test clips.
- test accuracy: the served model's accuracy on the clips the reporter scored.

The Pareto flags mark the branches no other branch beats on both accuracy and the cost
(:func:`services.reporter.pareto.pareto_front`), among the branches that have both figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.reporter.model import BranchReport, ReportData
from services.reporter.pareto import pareto_front
from trajlab.runs import split_run_name

SERVER = "server (Prometheus histogram)"
CLIENT = "reporter (Analyze round trips)"


@dataclass
class BranchCost:
    """One branch's cost and quality, each None when no run of it measured the figure."""

    branch: str
    runs: list[str]
    parameters: float | None = None
    flops_per_clip: float | None = None
    training_seconds: float | None = None  # wall time, mean over runs
    training_cpu_seconds: float | None = None  # trainer process CPU time, mean over runs
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_source: str = ""  # SERVER, CLIENT, or both joined when the runs differ
    test_accuracy: float | None = None  # served accuracy on the scored clips, mean over runs
    pareto_latency: bool | None = None  # None: not in the comparison (a figure is missing)
    pareto_compute: bool | None = None
    partial: list[str] = field(default_factory=list)  # "training CPU-s: 1 of 2 runs", ...


@dataclass
class RunCost:
    """One run's cost and quality, each None when the run did not measure (or has no) figure."""

    run: str
    has_results: bool  # the run's results were there (else every trainer figure is missing)
    parameters: float | None = None
    model_bytes: float | None = None  # model.onnx
    flops_per_clip: float | None = None
    training_seconds: float | None = None
    training_cpu_seconds: float | None = None
    epochs: int | None = None  # epochs in the run's history
    clips_per_second: float | None = None  # mean over the epochs that measured it
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_source: str = ""  # SERVER or CLIENT, "" without either
    test_accuracy: float | None = None  # the served model's accuracy on the scored clips


def _mean(values: list[float | None]) -> float | None:
    ok = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(ok) / len(ok) if ok else None


def run_cost(r: BranchReport) -> RunCost:
    """``r``'s figures: the trainer's results, its history, the served latency and accuracy."""
    res = r.results
    out = RunCost(run=r.name, has_results=res is not None)
    if res is not None:
        out.parameters = float(res.parameters) if res.parameters > 0 else None
        out.model_bytes = float(res.model_size_bytes) if res.model_size_bytes > 0 else None
        out.flops_per_clip = float(res.flops_per_clip) if res.HasField("flops_per_clip") else None
        out.training_seconds = res.training_seconds if res.training_seconds > 0 else None
        if res.HasField("training_cpu_seconds"):
            out.training_cpu_seconds = res.training_cpu_seconds
    if r.history is not None:
        out.epochs = len(r.history)
        out.clips_per_second = _mean([e.clips_per_second for e in r.history if e.clips_per_second > 0])
    lat = _latency(r)
    if lat is not None:
        out.latency_p50_ms, out.latency_p99_ms, out.latency_source = lat
    if r.served is not None:
        out.test_accuracy = r.served.metrics.accuracy
    return out


def _latency(r: BranchReport) -> tuple[float | None, float | None, str] | None:
    for lat, source in ((r.latency, SERVER), (r.client_latency, CLIENT)):
        if lat is not None and lat.p50_ms is not None and math.isfinite(lat.p50_ms):
            return lat.p50_ms, lat.p99_ms, source
    return None


# The figures a branch averages over its runs, and how the partial note names them.
_LABELS = {
    "parameters": "parameters",
    "flops_per_clip": "FLOPs/clip",
    "training_seconds": "training time",
    "training_cpu_seconds": "training CPU-s",
    "latency_p50_ms": "served latency",
    "test_accuracy": "test accuracy",
}


def branch_costs(data: ReportData) -> list[BranchCost]:
    """Every branch of the report (runs grouped by branch, in report order) with its cost and quality."""
    groups: dict[str, list[BranchReport]] = {}
    for r in data.branches.values():
        groups.setdefault(split_run_name(r.name)[0], []).append(r)
    out = []
    for branch, runs in groups.items():
        figs = [run_cost(r) for r in runs]
        c = BranchCost(branch=branch, runs=[r.name for r in runs])
        for key in ("parameters", "flops_per_clip", "training_seconds", "training_cpu_seconds"):
            setattr(c, key, _mean([getattr(f, key) for f in figs]))
        c.latency_p50_ms = _mean([f.latency_p50_ms for f in figs])
        c.latency_p99_ms = _mean([f.latency_p99_ms for f in figs])
        c.test_accuracy = _mean([f.test_accuracy for f in figs])
        c.latency_source = " + ".join(sorted({f.latency_source for f in figs if f.latency_source}))
        for key, label in _LABELS.items():
            have = sum(1 for f in figs if getattr(f, key) is not None)
            if 0 < have < len(figs):
                c.partial.append(f"{label}: {have} of {len(figs)} runs")
        out.append(c)
    _mark_front(out, "latency_p50_ms", "pareto_latency")
    _mark_front(out, "training_cpu_seconds", "pareto_compute")
    return out


def _mark_front(costs: list[BranchCost], cost_attr: str, flag_attr: str) -> None:
    both = [c for c in costs if c.test_accuracy is not None and getattr(c, cost_attr) is not None]
    front = pareto_front([c.test_accuracy for c in both], [getattr(c, cost_attr) for c in both])  # type: ignore[misc]
    for c, on in zip(both, front, strict=True):
        setattr(c, flag_attr, on)

"""Cost beside quality: per-branch figures (seed runs averaged), older results "not measured", the
section, the Pareto figure and report.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from services.reporter.build import write_report
from services.reporter.costs import CLIENT, SERVER, branch_costs
from services.reporter.model import (
    BranchReport,
    ForecastMetrics,
    Latency,
    ReportData,
    ServedEvaluation,
    WinnerDecision,
)
from trajlab.profiles import CLASS_NAMES
from trajlab.trainer.v1 import trainer_pb2


def _served(accuracy: float) -> ServedEvaluation:
    m = ForecastMetrics(
        samples=10, accuracy=accuracy, mean_class_accuracy=accuracy, confusion=[[0]], per_class_accuracy=[],
        forecast_mae=0.1, forecast_rmse=0.1, forecast_mae_pct=5.0, forecast_rmse_pct=6.0, ade=0.1, fde=0.2,
    )  # fmt: skip
    empty = np.zeros(0)
    return ServedEvaluation(m, 1, empty.astype(np.int64), empty, empty, empty.astype(np.int64), [1.0])


def _run(name: str, *, acc: float, p50: float | None, cpu: float | None, flops: int | None = 10**9,
         server: bool = True, params: int = 1000) -> BranchReport:  # fmt: skip
    res = trainer_pb2.EvaluationResults(parameters=params, training_seconds=60.0)
    if cpu is not None:
        res.training_cpu_seconds = cpu
    if flops is not None:
        res.flops_per_clip = flops
    r = BranchReport(name=name, trainer_target="x", results=res, served=_served(acc))
    if p50 is not None:
        lat = Latency(p50_ms=p50, p99_ms=2 * p50, requests=10.0, source="")
        if server:
            r.latency = lat
        r.client_latency = Latency(p50_ms=p50 + 100, p99_ms=p50 + 200, requests=10.0, source="")
    return r


def _data(*runs: BranchReport) -> ReportData:
    return ReportData(
        created_at="2026-11-22T00:00:00Z",
        branches={r.name: r for r in runs},
        class_names=CLASS_NAMES,
        winner=WinnerDecision(rule="r", rule_text="r", winner="", ranking=[], justification=""),
        missing=[],
        sources={},
        validation=None,
    )


def test_seed_runs_are_averaged_per_branch_and_the_front_is_marked() -> None:
    data = _data(
        _run("b1@s0", acc=0.90, p50=2.0, cpu=100.0),
        _run("b1@s1", acc=0.80, p50=4.0, cpu=140.0),
        _run("b2@s0", acc=0.70, p50=5.0, cpu=50.0),  # slower and worse than b1: off the latency front
        _run("b3", acc=0.95, p50=9.0, cpu=400.0),  # most accurate: on both fronts
    )
    costs = {c.branch: c for c in branch_costs(data)}
    assert list(costs) == ["b1", "b2", "b3"] and costs["b1"].runs == ["b1@s0", "b1@s1"]
    b1 = costs["b1"]
    assert abs(b1.test_accuracy - 0.85) < 1e-12 and b1.latency_p50_ms == 3.0 and b1.latency_p99_ms == 6.0
    assert b1.training_cpu_seconds == 120.0 and b1.flops_per_clip == 1e9 and b1.latency_source == SERVER
    assert [costs[b].pareto_latency for b in costs] == [True, False, True]
    assert [costs[b].pareto_compute for b in costs] == [True, True, True]  # b2 is the cheapest to train


def test_older_results_and_no_prometheus_say_not_measured_and_which_latency() -> None:
    data = _data(
        _run("b1", acc=0.9, p50=2.0, cpu=None, flops=None, server=False),  # results from before the fields
        _run("b2", acc=0.8, p50=None, cpu=10.0, params=0),
    )
    costs = {c.branch: c for c in branch_costs(data)}
    assert costs["b1"].flops_per_clip is None and costs["b1"].training_cpu_seconds is None
    assert costs["b1"].latency_source == CLIENT and costs["b1"].latency_p50_ms == 102.0
    assert costs["b1"].pareto_compute is None and costs["b2"].pareto_latency is None
    assert costs["b2"].parameters is None and costs["b2"].latency_source == ""


def test_a_run_missing_a_figure_is_named_in_the_partial_note() -> None:
    data = _data(_run("b1@s0", acc=0.9, p50=2.0, cpu=10.0), _run("b1@s1", acc=0.9, p50=2.0, cpu=None))
    (c,) = branch_costs(data)
    assert c.training_cpu_seconds == 10.0 and c.partial == ["training CPU-s: 1 of 2 runs"]


def _section(md: str) -> str:
    return md.split("## Cost beside quality", 1)[1].split("\n## ", 1)[0]


def _cost_rows(sec: str) -> dict[str, str]:
    """The cost table's rows by their first cell (the latency-by-source table follows it)."""
    table = sec.split("Serving latency per branch", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| b") and not line.startswith("| branch")]
    return {line.split(" | ")[0][2:]: line for line in rows}


def test_the_report_has_the_cost_section_figure_and_json(tmp_path: Path) -> None:
    data = _data(
        _run("b1", acc=0.9, p50=2.0, cpu=100.0),
        _run("b2", acc=0.8, p50=None, cpu=None, flops=None),  # an older run without any latency
    )
    res = write_report(data, tmp_path)
    sec = _section(res.markdown_path.read_text())
    rows = _cost_rows(sec)
    # parameters, model.onnx, FLOPs, training time, CPU-s, epochs, clips/s (no history: missing), p50, p99
    assert rows["b1"] == (
        "| b1 | 1,000 | not measured | 1.00 GFLOP | 1 min 00 s | 100.0 | missing | missing | 2.00 | 4.00 | "
        f"{SERVER} | 90.00 % | yes | yes |"
    )
    b2 = rows["b2"].split(" | ")
    assert [b2[i] for i in (3, 5, 8, 9, 10)] == ["not measured"] * 5  # FLOPs, CPU-s, p50, p99, source
    assert rows["b2"].endswith("| n/a | n/a |")
    assert "Served latency source: 'server (Prometheus histogram)'" in sec
    latency = sec.split("Serving latency per branch", 1)[1]  # both sources of every run, side by side
    assert "| b1 | 2.00 | 4.00 | 10 | 102.00 | 202.00 | 10 |  |" in latency
    fig = res.report_dir / "cost_pareto.png"
    assert fig in res.figure_paths and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cost_pareto.png" in sec and "Cost beside quality" in res.html_path.read_text()
    cost = {c["branch"]: c for c in json.loads(res.json_path.read_text())["cost"]}
    assert cost["b1"]["flops_per_clip"] == 1e9 and cost["b1"]["pareto_latency"] is True
    assert cost["b2"]["training_cpu_seconds"] is None and cost["b2"]["pareto_latency"] is None


def test_seed_runs_get_a_row_each_and_the_branch_mean_carries_the_flags(tmp_path: Path) -> None:
    data = _data(_run("b1@s0", acc=0.9, p50=2.0, cpu=100.0), _run("b1@s1", acc=0.8, p50=4.0, cpu=140.0))
    rows = _cost_rows(_section(write_report(data, tmp_path).markdown_path.read_text()))
    assert list(rows) == ["b1@s0", "b1@s1", "b1 (mean of 2 runs)"]
    assert rows["b1@s0"].endswith(f"| 2.00 | 4.00 | {SERVER} | 90.00 % |  |  |")
    assert rows["b1 (mean of 2 runs)"].endswith(f"| 120.0 |  |  | 3.00 | 6.00 | {SERVER} | 85.00 % | yes | yes |")


def test_no_cost_figures_at_all_renders_without_a_figure(tmp_path: Path) -> None:
    data = _data(_run("b1", acc=0.9, p50=None, cpu=None, flops=None))
    res = write_report(data, tmp_path)
    sec = _section(res.markdown_path.read_text())
    assert "Pareto figure: no branch has both" in sec and "Served latency: not measured" in sec
    assert not (res.report_dir / "cost_pareto.png").exists()

"""The cost section of a report built from fake trainers and encoder over real gRPC, without Prometheus:
trainers whose results predate FLOPs and CPU time read "not measured", the served latency is the
reporter's own timing of its Analyze calls and says so, and the Pareto figure is drawn."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from services.reporter.build import ReportSources, build_report
from services.reporter.costs import CLIENT
from services.reporter.settings import ReporterSettings
from tests.contract.reporter import kit
from trajlab.trainer.v1 import trainer_pb2


def test_cost_section_from_fake_sources_without_prometheus(
    world: kit.FakeWorld, make_sources: Callable[..., ReportSources], tmp_path: Path
) -> None:
    from trajlab.config import load_settings

    settings = load_settings(ReporterSettings, reports_dir=tmp_path / "reports", describe_samples=0)
    res = build_report(make_sources(), settings)
    md = res.markdown_path.read_text()
    sec = md.split("## Cost beside quality", 1)[1].split("\n## ", 1)[0]
    table = sec.split("Serving latency per branch", 1)[0]  # the cost table, before the latency by source
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines() if line.startswith("| b")}
    served = [s.name for s in world.specs if s.state == trainer_pb2.TRAINING_STATE_DONE]
    assert set(served) <= set(rows)
    for b in served:
        cells = rows[b]
        spec = next(s for s in world.specs if s.name == b)
        assert cells[1] == f"{spec.params:,}" and cells[3] == "not measured"  # FLOPs: older results
        assert cells[5] == "not measured"  # training CPU-s
        assert float(cells[8]) > 0 and float(cells[9]) >= float(cells[8])  # p50, p99 from the client
        assert cells[10] == CLIENT and cells[-1].rstrip(" |") == "n/a"  # no compute front without CPU-s
    assert "without Prometheus, the reporter's timing of the Analyze calls" in sec
    assert (res.report_dir / "cost_pareto.png").exists() and "cost_pareto.png" in sec
    cost = {c["branch"]: c for c in json.loads(res.json_path.read_text())["cost"]}
    assert all(cost[b]["latency_source"] == CLIENT for b in served)
    assert any(cost[b]["pareto_latency"] for b in served)  # someone is always on a non-empty front

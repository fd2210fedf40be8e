"""ReporterService over gRPC with the typed client, and the `trajlab report` command."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from services.reporter.build import ReportSources
from services.reporter.servicer import ReporterServicer
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
from tests.contract.reporter import kit
from trajlab.clients.reporter import ReporterClient
from trajlab.config import load_settings
from trajlab.grpc_server import create_server
from trajlab.reporter.v1 import reporter_pb2_grpc
from trajlab_cli import app


@pytest.fixture
def reporter(world: kit.FakeWorld, tmp_path: Path) -> Iterator[str]:
    targets = dict(kit.iter_targets(world))
    settings = load_settings(
        ReporterSettings,
        reports_dir=tmp_path / "reports",
        describe_samples=1,
        trainers=",".join(f"{b}={t}" for b, t in targets.items()),
    )

    def sources() -> ReportSources:
        return ReportSources(
            trainers={b: TrainerSource(b, t) for b, t in targets.items()},
            encoder=EncoderSource(world.encoder.target),
            describer=DescriberSource(world.describer.target),
            validation=lambda: world.val,
        )

    servicer = ReporterServicer(settings, sources)
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, s)],
        service_names=["trajlab.reporter.v1.ReporterService"],
    )
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_build_report_rpc_returns_paths_winner_and_summary(reporter: str) -> None:
    with ReporterClient(reporter, timeout=120) as client:
        client.wait_ready(10)
        rep = client.build_report(branches=["b1", "b2", "b4"], winner_rule="mae_then_accuracy")
    assert (
        Path(rep.markdown_path).is_file() and Path(rep.html_path).is_file() and Path(rep.json_path).is_file()
    )
    assert all(Path(p).is_file() for p in rep.figure_paths)
    assert rep.winner == "b2"  # lowest MAE
    assert "lowest forecast MAE" in rep.winner_rule and rep.justification
    rows = {r.branch: r for r in rep.summary}
    assert set(rows) == {"b1", "b2", "b4"}
    assert rows["b1"].accuracy == pytest.approx(21 / 24) and rows["b1"].served_accuracy == pytest.approx(
        21 / 24
    )
    assert rows["b4"].accuracy is None and "branch failed" in rows["b4"].missing_reason
    assert any(m.branch == "b4" and m.section == "results" for m in rep.missing)


def test_unknown_winner_rule_is_invalid_argument(reporter: str) -> None:
    with ReporterClient(reporter, timeout=30) as client, pytest.raises(grpc.RpcError) as err:
        client.build_report(winner_rule="fastest")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "winner_rule" in err.value.details()


def test_report_command_in_process(
    world: kit.FakeWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.reporter.sources.validation as validation

    # The command loads the validation split from a dataset directory; hand it the fake split instead.
    monkeypatch.setattr(validation, "load_validation", lambda data_dir, split="val": world.val)
    targets = ",".join(f"{b}={t}" for b, t in kit.iter_targets(world))
    res = CliRunner().invoke(
        app,
        [
            "report",
            "--trainers",
            targets,
            "--encoder",
            world.encoder.target,
            "--describer",
            "",
            "--reports-dir",
            str(tmp_path),
            "--describe-samples",
            "0",
        ],
        env={"COLUMNS": "160"},
    )
    assert res.exit_code == 0, res.output
    assert "Leader by the rule: b2" in res.output
    assert re.search(r"Verdict: (winner: b\d|statistically tied for first: b\d)", res.output), res.output
    assert "PARALLEL_RESULTS_COMPARISON.md" in res.output
    assert len(list(tmp_path.glob("*/report.html"))) == 1

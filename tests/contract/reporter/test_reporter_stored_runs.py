"""A full report from finished runs' stored results, with no trainer running (only the encoder
and the describer, for the served test-split figures and the equations)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict

from services.reporter.build import ReportSources, build_report
from services.reporter.model import ReportResult
from services.reporter.settings import ReporterSettings
from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource
from services.reporter.sources.stored_runs import stored_run_sources
from tests.contract.reporter import kit
from trajlab.config import load_settings

FINISHED = ("b1@s0", "b2@s0", "b2@s1", "b3@s0")


def _specs() -> list[kit.BranchSpec]:
    base = {s.name: s for s in kit.default_specs()}
    return [
        replace(base["b1"], name="b1@s0"),
        replace(base["b2"], name="b2@s0"),
        replace(base["b2"], name="b2@s1", wrong=[4, 11, 21]),
        replace(base["b3"], name="b3@s0"),
        replace(base["b4"], name="b4@s0"),
        # Served by the encoder (a model of an earlier sitting), but its run is training again.
        replace(base["b1"], name="b1@s1"),
    ]


def _write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[kit.FakeWorld, Path]]:
    specs = _specs()
    world = kit.start_world(specs, down=tuple(s.name for s in specs))  # no trainer at all
    base = tmp_path_factory.mktemp("runs")
    for s in specs:
        branch, seed = s.name.split("@s")
        run = base / branch / f"seed-{seed}"
        if s.name in FINISHED:
            res = kit.results_for(s, world.val)
            doc = MessageToDict(res, preserving_proto_field_name=True)
            doc["history"] = [
                MessageToDict(e, preserving_proto_field_name=True) for e in kit.history_for(s, res)
            ]
            doc["fingerprint"] = "0f" * 32
            _write(run / "results.json", doc)
            _write(run / "status.json", {"state": "done", "epoch": s.epochs, "total_epochs": s.epochs})
        elif s.error:
            _write(run / "status.json", {"state": "failed", "error": s.error, "epoch": 2, "total_epochs": 5})
        else:
            _write(run / "status.json", {"state": "training", "epoch": 2, "total_epochs": 5})
    yield world, base
    world.stop()


@pytest.fixture(scope="module")
def built(stored: tuple[kit.FakeWorld, Path], tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    world, base = stored
    assert world.trainers == {}
    assert world.encoder is not None and world.describer is not None
    sources = ReportSources(
        trainers=dict(stored_run_sources(base)),
        encoder=EncoderSource(world.encoder.target),
        describer=DescriberSource(world.describer.target),
        validation=lambda: world.val,
        validation_hint="fake split",
    )
    settings = load_settings(
        ReporterSettings, reports_dir=tmp_path_factory.mktemp("reports"), describe_samples=1
    )
    return build_report(sources, settings)


def test_every_stored_run_is_a_row_of_the_report(built: ReportResult) -> None:
    rows = {r.branch: r for r in built.summary}
    assert sorted(rows) == ["b1@s0", "b1@s1", "b2@s0", "b2@s1", "b3@s0", "b4@s0"]
    # Finished runs: the trainer's own figures from results.json and the served test-split figures.
    assert rows["b1@s0"].accuracy == pytest.approx(21 / 24) and rows["b1@s0"].missing_reason == ""
    assert rows["b2@s1"].served_accuracy == pytest.approx(21 / 24)
    assert rows["b4@s0"].accuracy is None
    assert rows["b4@s0"].missing_reason == "branch failed: loss became NaN at epoch 2"
    assert rows["b1@s1"].missing_reason == "no results yet: run is training (epoch 2/5)"


def test_statistics_use_the_finished_runs_and_name_the_others(built: ReportResult) -> None:
    doc = json.loads(built.json_path.read_text())
    stats = doc["statistics"]
    assert stats["runs_left_out"] == {
        "b4@s0": "branch failed: loss became NaN at epoch 2",
        "b1@s1": "no results yet: run is training (epoch 2/5)",  # served, yet not scored
    }
    # b2 has two finished seeds; the three branches stay statistically tied for first.
    assert built.verdict == "statistically tied for first: b2, b1, b3"
    md = built.markdown_path.read_text()
    assert (
        "The statistics use the 4 run(s) that finished and were served (b1@s0, b2@s0, b2@s1, b3@s0); "
        "left out: b1@s1 (no results yet: run is training (epoch 2/5)); b4@s0 (branch failed" in md
    )
    assert "| served model | b1@s1 | run not finished (no results yet" in md


def test_the_report_names_the_run_directories_it_read(
    built: ReportResult, stored: tuple[kit.FakeWorld, Path]
) -> None:
    md = built.markdown_path.read_text()
    assert f"b2@s1={stored[1] / 'b2' / 'seed-1'}" in md
    assert f"| b2@s1 | stored results.json ({stored[1] / 'b2' / 'seed-1'}) | 5 |" in md  # curves table

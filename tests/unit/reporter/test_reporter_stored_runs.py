"""Finished runs' stored results as a report source: finished, failed, pending and unusable runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.reporter.build import ReportSources
from services.reporter.settings import ReporterSettings
from services.reporter.sources.stored_runs import StoredRunSource, discover_runs, stored_run_sources
from trajlab.config import load_settings
from trajlab.errors import ConfigError
from trajlab.store import StoreError
from trajlab.store.local import LocalStore
from trajlab.store.units import publish_unit
from trajlab.trainer.v1 import trainer_pb2

FP = "ab" * 32


def results(accuracy: float = 0.875, **extra: Any) -> dict[str, Any]:
    """A results.json as the trainer writes it (proto field names, history, fingerprint)."""
    return {
        "branch": {"name": "b1", "encoder": "cnn3d", "enhancement": "none"},
        "class_names": ["linear", "circular", "parabolic", "spiral"],
        "accuracy": accuracy,
        "forecast_mae_pct": 3.5,
        "model_version": 2,
        "samples": 80,
        "history": [
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1, "val_accuracy": 0.5, "forecast_mae_pct": 9.0},
            {
                "epoch": 2,
                "train_loss": 0.5,
                "val_loss": 0.6,
                "val_accuracy": accuracy,
                "forecast_mae_pct": 3.5,
            },
        ],
        "fingerprint": FP,
        "some_path_the_proto_does_not_know": "/x",
        **extra,
    }


def write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """b1@s0 done, b1@s1 failed, b2@s0 training, b3@s0 without any status, b2@s1 stale results."""
    base = tmp_path / "runs"
    write(base / "b1/seed-0/results.json", results())
    write(
        base / "b1/seed-0/status.json",
        {"state": "done", "epoch": 2, "total_epochs": 2, "updated_at": "2026-01-01T00:00:00Z"},
    )
    write(
        base / "b1/seed-1/status.json",
        {"state": "failed", "error": "loss became NaN at epoch 3", "epoch": 3, "total_epochs": 8},
    )
    write(
        base / "b2/seed-0/status.json",
        {"state": "training", "epoch": 4, "total_epochs": 8, "updated_at": "2026-01-01T00:00:00Z"},
    )
    (base / "b3/seed-0/checkpoints/abc").mkdir(parents=True)
    (base / "b3/seed-0/checkpoints/abc/ckpt-epoch-00001.pt").write_bytes(b"x")
    write(base / "b2/seed-1/results.json", results())
    write(
        base / "b2/seed-1/status.json",
        {"state": "training", "epoch": 1, "total_epochs": 8, "updated_at": "2999-01-01T00:00:00Z"},
    )
    write(base / "notes/readme.txt", "not a run")
    return base


def test_runs_are_discovered_from_their_directories(runs: Path) -> None:
    assert discover_runs(LocalStore(runs)) == ["b1@s0", "b1@s1", "b2@s0", "b2@s1", "b3@s0"]


def test_a_finished_run_gives_its_results_and_history(runs: Path) -> None:
    f = stored_run_sources(runs)["b1@s0"].fetch()
    assert f.missing == []
    assert f.status is not None and f.status.state == trainer_pb2.TRAINING_STATE_DONE
    assert f.results is not None and f.results.accuracy == pytest.approx(0.875)
    assert f.results.model_version == 2 and f.results.branch.encoder == "cnn3d"
    assert [int(e.epoch) for e in f.history or []] == [1, 2]


def test_a_failed_run_is_shown_with_its_error(runs: Path) -> None:
    src = stored_run_sources(runs)["b1@s1"]
    f = src.fetch()
    assert f.results is None
    assert [(m.section, m.reason) for m in f.missing] == [
        ("results", "branch failed: loss became NaN at epoch 3")
    ]
    assert src.status().state == trainer_pb2.TRAINING_STATE_FAILED


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        ("b2@s0", "no results yet: run is training (epoch 4/8)"),
        ("b3@s0", "no results yet: run is no status yet"),
        # results.json of an earlier run, but the directory is training again since
        ("b2@s1", "no results yet: run is training (epoch 1/8)"),
    ],
)
def test_a_run_that_is_not_finished_is_pending(runs: Path, run: str, reason: str) -> None:
    src = stored_run_sources(runs)[run]
    f = src.fetch()
    assert f.results is None and [m.reason for m in f.missing] == [reason]
    assert src.status().state not in (trainer_pb2.TRAINING_STATE_DONE, trainer_pb2.TRAINING_STATE_FAILED)


def test_results_without_a_fingerprint_are_not_taken_as_finished(runs: Path) -> None:
    bad = results()
    del bad["fingerprint"]
    write(runs / "b1/seed-0/results.json", bad)
    f = stored_run_sources(runs)["b1@s0"].fetch()
    assert f.results is None
    assert "results.json has no run fingerprint" in f.missing[0].reason
    write(runs / "b1/seed-0/results.json", "{half a fi")
    assert "not valid JSON" in stored_run_sources(runs)["b1@s0"].fetch().missing[0].reason


def test_bucket_layout_needs_the_marker_and_a_matching_hash(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")  # the bucket's layout (services.trainer.rundir), on disk
    src = tmp_path / "results.json"
    write(src, results(accuracy=0.9))
    publish_unit(store, "b1/seed-0/results", {"results.json": src})
    store.put_file("b2/seed-0/results/results.json", src)  # uploaded, marker never written
    run = StoredRunSource("b1@s0", store, bucket=True)
    assert run.fetch().results is not None and run.fetch().results.accuracy == pytest.approx(0.9)
    assert "no results yet" in StoredRunSource("b2@s0", store, bucket=True).fetch().missing[0].reason
    store.put_bytes("b1/seed-0/results/results.json", json.dumps(results(accuracy=1.0)).encode())
    f = run.fetch()
    assert f.results is None and "does not match its completion marker" in f.missing[0].reason


def test_named_runs_keep_their_order_and_missing_ones_are_pending(runs: Path) -> None:
    sources = stored_run_sources(runs, ["b2@s0", "b1@s0", "b9@s0"])
    assert list(sources) == ["b2@s0", "b1@s0", "b9@s0"]
    assert sources["b9@s0"].fetch().missing[0].reason == "no results yet: run is no status yet"
    assert sources["b1@s0"].target == str(runs / "b1/seed-0")


def test_settings_add_stored_runs_beside_live_trainers(runs: Path) -> None:
    s = load_settings(ReporterSettings, runs_dir=str(runs), runs="b1@s0,b1@s1", trainers="b1@s0=127.0.0.1:1")
    sources = ReportSources.from_settings(s)
    assert list(sources.trainers) == ["b1@s0", "b1@s1"]
    assert sources.trainers["b1@s0"].target == "127.0.0.1:1"  # the live trainer is asked first
    assert isinstance(sources.trainers["b1@s1"], StoredRunSource)


@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("runs", "b1", "branch@s<seed>"),
        ("runs", "b1@s0,b1@s0", "given twice"),
        ("runs_dir", "ftp://x/y", "s3://"),
    ],
)
def test_bad_run_settings_name_the_field(field: str, value: str, text: str) -> None:
    with pytest.raises(ConfigError, match=field) as err:
        load_settings(ReporterSettings, **{field: value})
    assert text in str(err.value)


def test_a_missing_runs_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"runs_dir: .* is not a directory"):
        stored_run_sources(tmp_path / "nope")


def test_the_monitor_shows_stored_runs_without_a_trainer(runs: Path) -> None:
    from typer.testing import CliRunner

    from trajlab_cli import app

    out = CliRunner().invoke(app, ["monitor", "--runs-dir", str(runs), "--once"], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    lines = {ln.split()[1]: ln for ln in out.output.splitlines() if ln.startswith("│") and "@s" in ln}
    assert set(lines) == {"b1@s0", "b1@s1", "b2@s0", "b2@s1", "b3@s0"}
    assert "done" in lines["b1@s0"] and "failed" in lines["b1@s1"] and "training" in lines["b2@s0"]


def test_the_reporter_job_reports_stored_runs_without_waiting_for_pending_ones(
    runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.reporter import once

    for key, value in {
        "RUNS_DIR": str(runs),
        "ENCODER_TARGET": "",
        "DESCRIBER_TARGET": "",
        "REPORTS_DIR": str(tmp_path / "reports"),
        "DATA_DIR": str(tmp_path / "no-data"),
    }.items():
        monkeypatch.setenv(f"TRAJLAB_REPORTER_{key}", value)
    assert once.main() == 0  # b2@s0 is still training: reported as such, not waited for
    (report,) = (tmp_path / "reports").glob("*/report.json")
    doc = json.loads(report.read_text())
    assert sorted(doc["branches"]) == ["b1@s0", "b1@s1", "b2@s0", "b2@s1", "b3@s0"]
    monkeypatch.setenv("TRAJLAB_REPORTER_RUNS_DIR", str(tmp_path / "nope"))
    assert once.main() == 2  # a runs_dir that cannot be read: a configuration error


def test_the_run_matrix_names_the_runs_to_report(runs: Path, tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("branches: [b2, b1]\nseeds: [0, 1]\n")
    s = load_settings(ReporterSettings, runs_dir=str(runs), run_matrix_file=matrix)
    sources = ReportSources.from_settings(s)
    assert list(sources.trainers) == ["b2@s0", "b2@s1", "b1@s0", "b1@s1"]  # b3@s0 is not the matrix's
    matrix.write_text("branches: [b1, b1]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"(?s)matrix\.yaml.*branches: .*listed more than once"):
        load_settings(ReporterSettings, runs_dir=str(runs), run_matrix_file=matrix).run_names()

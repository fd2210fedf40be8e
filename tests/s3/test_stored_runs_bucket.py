"""The reporter reads finished runs' results from the bucket the trainers uploaded them to (real S3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.reporter.sources.stored_runs import stored_run_sources
from services.trainer.rundir import RunStore
from trajlab.store import StoreError, open_store
from trajlab.trainer.v1 import trainer_pb2

pytestmark = pytest.mark.s3


def _results(accuracy: float) -> dict[str, object]:
    return {
        "accuracy": accuracy,
        "forecast_mae_pct": 2.5,
        "model_version": 1,
        "history": [{"epoch": 1, "val_accuracy": accuracy}],
        "fingerprint": "c3" * 32,
    }


def _trainer_saves(bucket: str, run: str, local: Path, data: dict[str, object]) -> None:
    """What a trainer pod does at the end of a run: results.json locally, then the unit upload."""
    local.mkdir(parents=True)
    (local / "results.json").write_text(json.dumps(data))
    RunStore.at(f"s3://{bucket}/runs/{run}", local, keep=1).saved(local / "results.json")


def test_finished_runs_are_read_from_the_bucket_and_the_others_named(
    bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    _trainer_saves(bucket, "b1/seed-0", tmp_path / "b1", _results(0.9))
    _trainer_saves(bucket, "b3/seed-0", tmp_path / "b3", _results(0.8))
    store = open_store(f"s3://{bucket}/runs")
    # b2: killed between its results upload and the marker; its status says where it was.
    store.put_bytes("b2/seed-0/results/results.json", json.dumps(_results(0.99)).encode())
    store.put_bytes(
        "b2/seed-0/status.json", json.dumps({"state": "exporting", "epoch": 5, "total_epochs": 5}).encode()
    )
    # b3: its results object replaced after the marker was written.
    store.put_bytes("b3/seed-0/results/results.json", json.dumps(_results(1.0)).encode())
    # b4: failed, as its status (uploaded on the trainer's status cadence) says.
    store.put_bytes("b4/seed-1/status.json", json.dumps({"state": "failed", "error": "NaN loss"}).encode())

    sources = stored_run_sources(f"s3://{bucket}/runs")
    assert list(sources) == ["b1@s0", "b2@s0", "b3@s0", "b4@s1"]
    fetched = {n: s.fetch() for n, s in sources.items()}
    b1 = fetched["b1@s0"]
    assert b1.missing == [] and b1.results is not None and b1.results.accuracy == pytest.approx(0.9)
    assert b1.status is not None and b1.status.state == trainer_pb2.TRAINING_STATE_DONE
    assert sources["b1@s0"].target == f"s3://{bucket}/runs/b1/seed-0"
    assert fetched["b2@s0"].results is None
    assert fetched["b2@s0"].missing[0].reason == "no results yet: run is exporting (epoch 5/5)"
    assert fetched["b3@s0"].results is None
    assert "does not match its completion marker" in fetched["b3@s0"].missing[0].reason
    assert fetched["b4@s1"].missing[0].reason == "branch failed: NaN loss"


def test_a_missing_bucket_and_wrong_credentials_are_clear_errors(
    bucket: str, s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(StoreError, match="no-such-bucket-x"):
        stored_run_sources("s3://no-such-bucket-x/runs")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "n0t-the-s3cret")
    with pytest.raises(StoreError) as err:
        stored_run_sources(f"s3://{bucket}/runs")
    assert "n0t-the-s3cret" not in str(err.value)  # the secret is never echoed

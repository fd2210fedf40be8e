"""A bucket run directory gets the trainer's status.json: at most one PUT per status interval,
always the run's end, and an upload failure never stops the training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.reporter.sources.stored_runs import StoredRunSource
from services.trainer.rundir import RunStore
from trajlab.store import StoreError
from trajlab.store.local import LocalStore
from trajlab.trainer.v1 import trainer_pb2


class CountingStore(LocalStore):
    """A LocalStore standing in for a bucket, counting PUTs (and failing them when asked)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts = 0
        self.fail = False

    def put_file(self, key: str, path: Path) -> None:
        if self.fail:
            raise StoreError(f"{self.url}: endpoint unreachable")
        self.puts += 1
        super().put_file(key, path)


def _status(local: Path, **fields: object) -> Path:
    path = local / "status.json"
    path.write_text(json.dumps({"branch": "b1", "total_epochs": 8, **fields}))
    return path


def test_status_uploads_are_rate_limited_but_the_end_always_goes_up(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    bucket = CountingStore(tmp_path / "bucket" / "b1" / "seed-0")  # the run's prefix in the bucket
    run = RunStore(bucket, local, keep=1, status_interval_seconds=3600.0)
    for epoch in range(1, 6):  # one status write per epoch, all within one interval
        run.saved(_status(local, state="training", epoch=epoch))
    assert bucket.puts == 1
    stored = StoredRunSource("b1@s0", LocalStore(tmp_path / "bucket"), bucket=True)
    assert stored.status().epoch == 1  # what the reporter and the monitor read from the bucket
    run.saved(_status(local, state="failed", epoch=5, error="loss became NaN"))
    assert bucket.puts == 2
    status = stored.status()
    assert status.state == trainer_pb2.TRAINING_STATE_FAILED and status.error == "loss became NaN"


def test_a_failed_status_upload_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    bucket = CountingStore(tmp_path / "bucket")
    bucket.fail = True
    RunStore(bucket, local, keep=1, status_interval_seconds=0.0).saved(
        _status(local, state="training", epoch=1)
    )
    assert "status not uploaded" in caplog.text and "endpoint unreachable" in caplog.text

"""``trajlab train`` with its run directory, dataset and model repository in a bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.trainer import kit as tkit
from trajlab.modelbucket import complete_versions
from trajlab.store import open_store
from trajlab.store.units import complete_units
from trajlab_cli import app

pytestmark = pytest.mark.s3


@pytest.mark.slow
def test_trajlab_train_reads_and_writes_the_bucket_and_a_rerun_elsewhere_reuses_its_results(
    bucket: str, s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile = tkit.write_profile_yaml(tmp_path / "tiny.yaml", tkit.tiny_profile(epochs=2))
    args = [
        "train", "--branch", "b1", "--profile", str(profile), "--threads", "1", "--json",
        "--data", f"s3://{bucket}/data", "--run-dir", f"s3://{bucket}/runs/b1",
        "--model-repo", f"s3://{bucket}/models", "--text-cache", str(tmp_path / "text"),
    ]  # fmt: skip
    for node in ("node-1", "node-2"):
        (tmp_path / node).mkdir()
    monkeypatch.chdir(tmp_path / "node-1")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    first = json.loads(res.output[res.output.index("{") :])
    assert first["model_version"] == 1
    assert complete_versions(open_store(f"s3://{bucket}/models").list("")) == {"b1": [1]}
    runs = complete_units(open_store(f"s3://{bucket}/runs/b1").list(""))
    assert "results" in runs and any(u.endswith("epoch-00002") for u in runs)
    # Another machine (an empty working directory): the completed run comes from the bucket,
    # nothing is trained or published again.
    monkeypatch.chdir(tmp_path / "node-2")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    again = json.loads(res.output[res.output.index("{") :])
    assert again["accuracy"] == first["accuracy"] and again["model_version"] == 1
    assert complete_versions(open_store(f"s3://{bucket}/models").list("")) == {"b1": [1]}

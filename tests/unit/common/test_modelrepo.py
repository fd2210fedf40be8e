"""The model repository the trainers write and the encoder reads."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from trajlab.errors import InvalidArgument
from trajlab.modelrepo import (
    METADATA_FILE,
    MODEL_FILE,
    list_versions,
    publish_version,
    read_metadata,
    sha256_file,
)


def _meta() -> dict[str, object]:
    return {
        "branch": "b1",
        "branch_config": {"name": "b1", "encoder": "i3d", "enhancement": "none"},
        "profile": "quick",
        "input": {"frames": 4, "height": 8, "width": 8, "channels": 3, "mean": [0.2] * 3, "std": [0.25] * 3},
        "class_names": ["linear", "circular", "helical", "parabolic"],
        "outputs": [
            {"name": "probabilities", "shape": ["batch", 4]},
            {"name": "forecast", "shape": ["batch", 4, 3]},
            {"name": "embedding", "shape": ["batch", 128]},
        ],
        "forecast_horizon": 4,
        "fps": 8.0,
        "embedding_dim": 128,
        "opset": 18,
        "framework": "torch 2.13.0",
        "validation_metrics": {"accuracy": 0.9},
        "dataset_manifest_sha256": "0" * 64,
    }


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "m.onnx"
    p.write_bytes(os.urandom(1024))
    return p


def test_versions_are_complete_monotonic_and_checksummed(tmp_path: Path, model_file: Path) -> None:
    root = tmp_path / "repo"
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: publish_version(root, "b1", model_file, _meta()), range(6)))
    assert sorted(v for v, _ in results) == [1, 2, 3, 4, 5, 6]
    assert list_versions(root, "b1") == [1, 2, 3, 4, 5, 6]
    meta = read_metadata(root / "b1" / "6", root=root)
    assert meta.version == 6
    assert meta.model_sha256 == sha256_file(model_file) == sha256_file(root / "b1/6" / MODEL_FILE)
    # no temp directories are left behind, and readers would ignore them anyway
    assert sorted(p.name for p in (root / "b1").iterdir() if not p.name.startswith(".lock")) == [
        "1", "2", "3", "4", "5", "6"]


def test_a_failed_publish_leaves_no_version(tmp_path: Path, model_file: Path) -> None:
    root = tmp_path / "repo"
    bad = _meta()
    bad["forecast_horizon"] = 0
    with pytest.raises(ValueError, match="forecast_horizon"):
        publish_version(root, "b1", model_file, bad)
    assert list_versions(root, "b1") == []
    assert [p.name for p in (root / "b1").iterdir() if p.name != ".lock"] == []


def test_malformed_metadata_is_refused_naming_the_field(tmp_path: Path, model_file: Path) -> None:
    root = tmp_path / "repo"
    _, vdir = publish_version(root, "b1", model_file, _meta())
    data = json.loads((vdir / METADATA_FILE).read_text())
    data["input"]["frames"] = -3
    (vdir / METADATA_FILE).write_text(json.dumps(data))
    with pytest.raises(InvalidArgument, match=r"input\.frames"):
        read_metadata(vdir, root=root)
    (vdir / METADATA_FILE).write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        read_metadata(vdir, root=root)


def test_symlink_out_of_the_repository_is_refused(tmp_path: Path, model_file: Path) -> None:
    root = tmp_path / "repo"
    _, vdir = publish_version(root, "b1", model_file, _meta())
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(b"x")
    (vdir / MODEL_FILE).unlink()
    (vdir / MODEL_FILE).symlink_to(outside)
    with pytest.raises(InvalidArgument, match="outside the model repository"):
        read_metadata(vdir, root=root)

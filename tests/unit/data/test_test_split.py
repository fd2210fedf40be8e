"""The held-out test split: disjoint from train/val, balanced, optional, and old caches refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.unit.data.conftest import small_config
from trajlab.data import DatasetError, build_dataset, load_dataset
from trajlab.profiles import CLASS_NAMES, load_profile


def test_test_split_is_disjoint_balanced_and_leaves_train_val_unchanged(tmp_path: Path) -> None:
    without = load_dataset(build_dataset(small_config(samples=24, frames=4), tmp_path / "a"))
    ds = load_dataset(build_dataset(small_config(samples=24, frames=4, test_samples=16), tmp_path / "b"))
    assert ds.splits == ("train", "val", "test") and without.splits == ("train", "val")
    test = ds.split("test")
    assert len(test) == 16
    assert test.class_counts() == {c: 4 for c in CLASS_NAMES}
    seen = set(ds.train.sample_ids.tolist()) | set(ds.val.sample_ids.tolist())
    assert seen.isdisjoint(test.sample_ids.tolist())
    # No clip of the test split repeats a training or validation clip.
    flat = np.asarray(test.clips).reshape(len(test), -1)
    for other in (ds.train, ds.val):
        o = np.asarray(other.clips).reshape(len(other), -1)
        assert not (flat[:, None, :] == o[None, :, :]).all(axis=2).any()
    # Adding a test split does not change the clips the trainers see.
    assert np.array_equal(np.asarray(ds.train.clips), np.asarray(without.train.clips))
    assert np.array_equal(np.asarray(ds.val.clips), np.asarray(without.val.clips))
    assert ds.manifest["counts"]["test"]["total"] == 16


def test_dataset_without_test_split_says_so(tmp_path: Path) -> None:
    ds = load_dataset(build_dataset(small_config(samples=24, frames=4), tmp_path / "a"))
    with pytest.raises(DatasetError, match=r"no test split.*test_samples"):
        ds.split("test")


def test_cache_of_the_previous_format_is_refused_with_how_to_rebuild(tmp_path: Path) -> None:
    out = build_dataset(small_config(samples=24, frames=4), tmp_path / "a")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest["config"].pop("test_samples")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=r"another version.*format 1.*--force"):
        load_dataset(out)
    shutil.rmtree(out)


def test_profiles_hold_out_a_test_split() -> None:
    assert load_profile("quick").dataset.test_samples >= 400
    assert load_profile("seed").dataset.test_samples >= 1000

"""The reporter reads the validation split the trainers used, from the real dataset cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.reporter.sources.validation import load_validation
from trajlab.profiles import CLASS_NAMES, DatasetConfig


def test_loads_the_val_split_of_a_built_dataset(tmp_path: Path) -> None:
    from trajlab.data import build_dataset, load_dataset

    cfg = DatasetConfig(samples=16, frames=6, horizon=2, height=16, width=16, seed=3)
    out = build_dataset(cfg, tmp_path / "ds", progress=False)
    val = load_validation(out)
    ds = load_dataset(out)
    assert len(val) == len(ds.val.labels) > 0
    assert val.frames == 6 and val.horizon == 2 and val.fps == cfg.fps
    assert val.class_names == CLASS_NAMES
    assert val.manifest_sha256 == ds.manifest_sha256
    np.testing.assert_array_equal(val.clips, ds.val.clips)
    np.testing.assert_allclose(val.extent, ds.val.extent)
    assert len(val.equations) == len(val)


def test_missing_dataset_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no dataset"):
        load_validation(tmp_path / "nothing")


def test_loads_the_held_out_test_split_and_names_it(tmp_path: Path) -> None:
    from trajlab.data import build_dataset, load_dataset

    cfg = DatasetConfig(samples=16, test_samples=8, frames=6, horizon=2, height=16, width=16, seed=3)
    out = build_dataset(cfg, tmp_path / "ds", progress=False)
    test = load_validation(out, "test")
    ds = load_dataset(out)
    assert test.split == "test" and len(test) == 8
    np.testing.assert_array_equal(test.clips, ds.split("test").clips)


def test_a_dataset_without_a_test_split_is_refused_naming_the_setting(tmp_path: Path) -> None:
    from trajlab.data import build_dataset

    cfg = DatasetConfig(samples=16, frames=6, horizon=2, height=16, width=16, seed=3)
    out = build_dataset(cfg, tmp_path / "ds", progress=False)
    with pytest.raises(Exception, match=r"no test split.*test_samples"):
        load_validation(out, "test")

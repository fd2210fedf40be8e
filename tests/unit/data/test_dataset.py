"""build_dataset / load_dataset: determinism, balance, stratified split, the API, refusing bad caches."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.unit.data.conftest import small_config
from trajlab.data import DatasetError, build_dataset, build_dataset_detailed, evaluate_equations, load_dataset
from trajlab.errors import ConfigError
from trajlab.profiles import CLASS_NAMES, load_profile


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(
    small_dataset_dir: Path, tmp_path: Path
) -> None:
    again = build_dataset(small_config(), tmp_path / "again", workers=2)
    one = build_dataset(small_config(), tmp_path / "one", workers=1)
    ref = _digests(small_dataset_dir)
    assert "manifest.json" in ref and "train/clips.npy" in ref
    assert _digests(again) == ref
    assert _digests(one) == ref


def test_other_seed_gives_other_data(small_dataset_dir: Path, tmp_path: Path) -> None:
    other = load_dataset(build_dataset(small_config(seed=1), tmp_path / "seed1"))
    ds = load_dataset(small_dataset_dir)
    assert not np.array_equal(other.train.clips, ds.train.clips)
    assert other.train.equations != ds.train.equations
    assert other.manifest_sha256 != ds.manifest_sha256


def test_api_shapes_types_and_contents(small_dataset_dir: Path) -> None:
    ds = load_dataset(small_dataset_dir, expected_config=small_config())
    cfg = ds.config
    assert cfg == small_config()
    assert len(ds.manifest_sha256) == 64
    for sp in (ds.train, ds.val):
        n = len(sp)
        assert sp.clips.shape == (n, 8, 24, 24, 3) and sp.clips.dtype == np.uint8
        assert sp.labels.shape == (n,) and sp.labels.dtype == np.int64
        assert sp.positions.shape == (n, 12, 3) and sp.positions.dtype == np.float32
        assert np.array_equal(sp.observed, sp.positions[:, :8])
        assert np.array_equal(sp.future, sp.positions[:, 8:])
        assert sp.times.dtype == np.float32
        np.testing.assert_allclose(sp.times, np.arange(12) / cfg.fps)
        assert sp.extent.dtype == np.float32
        np.testing.assert_allclose(sp.extent, np.ptp(sp.positions, axis=1).max(axis=1), rtol=1e-6)
        assert len(sp.equations) == n and len(sp.params) == n
        assert sp.clips.std() > 5  # not blank
        seconds = np.arange(12) / cfg.fps
        for k in [
            int(np.flatnonzero(sp.labels == c)[0]) for c in range(4)
        ]:  # one clip per class (sympy is slow)
            got = evaluate_equations(sp.equations[k], seconds)
            # float32 storage: ~1e-6 relative to positions of magnitude <= 10
            np.testing.assert_allclose(got, sp.positions[k], atol=1e-5)
        for k in range(n):
            has_cos = "cos" in "".join(sp.equations[k])
            assert has_cos == (CLASS_NAMES[sp.labels[k]] in ("circular", "helical"))


def test_classes_balanced_and_split_stratified(tmp_path: Path) -> None:
    cfg = small_config(samples=42, frames=4, val_fraction=0.25)  # 42 = 11 + 11 + 10 + 10
    ds = load_dataset(build_dataset(cfg, tmp_path / "d"))
    total = {c: ds.train.class_counts()[c] + ds.val.class_counts()[c] for c in CLASS_NAMES}
    assert sorted(total.values()) == [10, 10, 11, 11]
    for c in CLASS_NAMES:
        assert ds.val.class_counts()[c] == round(total[c] * 0.25)
    ids = np.concatenate([ds.train.sample_ids, ds.val.sample_ids])
    assert sorted(ids.tolist()) == list(range(42))  # disjoint and complete


def test_seed_profile_split_is_960_240() -> None:
    from trajlab.data.build import _plan

    plan = _plan(load_profile("seed").dataset)
    assert len(plan.ids["train"]) == 960 and len(plan.ids["val"]) == 240
    assert np.bincount(plan.labels("val")).tolist() == [60, 60, 60, 60]
    assert np.bincount(plan.labels("train")).tolist() == [240, 240, 240, 240]


def test_matching_cache_is_reused(small_dataset_dir: Path) -> None:
    before = (small_dataset_dir / "train" / "clips.npy").stat().st_mtime_ns
    res = build_dataset_detailed(small_config(), small_dataset_dir)
    assert res.reused and res.clips == 40
    assert (small_dataset_dir / "train" / "clips.npy").stat().st_mtime_ns == before


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_cache_is_refused_then_rebuilt_with_force(small_dataset_dir: Path, tmp_path: Path) -> None:
    d = _copy(small_dataset_dir, tmp_path / "corrupt")
    f = d / "train" / "clips.npy"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one pixel's bits
    f.write_bytes(bytes(data))
    with pytest.raises(DatasetError) as err:
        load_dataset(d)
    msg = str(err.value)
    assert (
        "corrupt" in msg and "train/clips.npy" in msg and "--force" in msg and "trajlab dataset build" in msg
    )
    assert isinstance(err.value, ConfigError)
    with pytest.raises(DatasetError):
        build_dataset(small_config(), d)  # never silently overwritten
    build_dataset(small_config(), d, force=True)
    assert _digests(d) == _digests(small_dataset_dir)


def test_truncated_file_is_refused(small_dataset_dir: Path, tmp_path: Path) -> None:
    d = _copy(small_dataset_dir, tmp_path / "trunc")
    f = d / "val" / "positions.npy"
    f.write_bytes(f.read_bytes()[:-12])
    with pytest.raises(DatasetError, match=r"val/positions\.npy"):
        load_dataset(d)


def test_unverified_load_of_a_broken_cache_still_says_how_to_rebuild(
    small_dataset_dir: Path, tmp_path: Path
) -> None:
    d = _copy(small_dataset_dir, tmp_path / "broken")
    (d / "val" / "labels.npy").write_bytes(b"not an npy file")
    with pytest.raises(DatasetError, match="--force"):
        load_dataset(d, verify=False)


def test_cache_of_another_config_is_refused_naming_the_fields(small_dataset_dir: Path) -> None:
    want = small_config(samples=48, clutter=2)
    with pytest.raises(DatasetError) as err:
        load_dataset(small_dataset_dir, expected_config=want)
    msg = str(err.value)
    assert "samples: cache has 40, expected 48" in msg
    assert "clutter: cache has 1, expected 2" in msg
    assert "--force" in msg
    with pytest.raises(DatasetError, match="another config"):
        build_dataset(want, small_dataset_dir)


def test_other_generator_version_is_refused(small_dataset_dir: Path, tmp_path: Path) -> None:
    d = _copy(small_dataset_dir, tmp_path / "oldgen")
    m = json.loads((d / "manifest.json").read_text())
    m["generator_version"] = 0
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="another version"):
        load_dataset(d)


def test_missing_dataset_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="trajlab dataset build"):
        load_dataset(tmp_path / "nothing")


def test_bad_config_names_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndataset:\n  height: 5\n  fov_degrees: 300\n")
    with pytest.raises(ConfigError) as err:
        load_profile(bad)
    assert "dataset.height" in str(err.value) and "dataset.fov_degrees" in str(err.value)


def test_dataset_import_keeps_heavy_modules_out() -> None:
    code = (
        "import sys; import trajlab.data, trajlab_cli.dataset; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'sympy', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

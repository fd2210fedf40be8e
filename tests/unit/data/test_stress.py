"""Stress sets: one factor changed each, deterministic, beyond-range motions outside the training
ranges, and the new range field leaving today's datasets byte-identical."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.unit.data.conftest import small_config
from trajlab.data import TrajectoryGenerator, build_dataset, load_dataset
from trajlab.data.stress import (
    STRESS_SETS,
    build_stress_set,
    parse_sets,
    stress_config,
    stress_dir,
    stress_samples,
)
from trajlab.errors import ConfigError
from trajlab.profiles import DatasetConfig, load_profile

# sha256 of files of small_config(test_samples=8), built by the generator before
# motion_range_scale existed (GENERATOR_VERSION 3). Change only with GENERATOR_VERSION.
GOLDEN = {
    "config_sha256": "91f2c7e29868ffdeeda41ac368c6e07f00d46630f987a3a88dd1eccd442a93d0",
    "train/clips.npy": "b9c8e572b8cde7003c153579b9a2edb04bad595a3a3fb6e12387b30d9252db66",
    "train/positions.npy": "f6c3ecfbbefa9b900c829195c29630072e5ccbabbca494f51166aa2db9a404c2",
    "test/clips.npy": "04789be79519b35213a886a65505d250809e478915f43a31df11be0faf3c3250",
    "test/positions.npy": "9c5d356d35eb90f2edf43ea8abebe8a9646a589927e16f1bade41b952e6fb038",
}


@pytest.mark.parametrize("profile", ["quick", "seed"])
@pytest.mark.parametrize("name", list(STRESS_SETS))
def test_each_set_changes_exactly_one_factor_of_the_profile(profile: str, name: str) -> None:
    base = load_profile(profile).dataset
    cfg = stress_config(base, name)
    have, want = cfg.model_dump(), base.model_dump()
    for layout in ("test_samples", "samples", "test_id_offset"):  # the set's size and ids, not a factor
        have.pop(layout, None), want.pop(layout, None)
    changed = {k for k in set(have) | set(want) if have.get(k) != want.get(k)}
    assert changed == {STRESS_SETS[name].field}
    assert cfg.test_samples == min(160, base.test_samples)
    # Its test ids are the profile's test split's: stress clip j can be test clip j's twin.
    assert cfg.samples + cfg.test_id_offset == base.samples


def test_the_changes_go_the_stated_way() -> None:
    base = load_profile("quick").dataset
    assert stress_config(base, "clutter").clutter > base.clutter
    assert stress_config(base, "transients").transients > base.transients
    assert stress_config(base, "noise").background_noise == 2 * base.background_noise
    assert stress_config(base, "shake").camera_jitter > base.camera_jitter
    assert stress_config(base, "unseen_seed").seed != base.seed
    assert stress_config(base, "beyond_range").motion_range_scale > 1.0


def test_set_names_and_sizes_are_checked() -> None:
    assert parse_sets(None) == list(STRESS_SETS) == parse_sets("all")
    assert parse_sets("noise, clutter") == ["clutter", "noise"]  # table order, whatever the order given
    with pytest.raises(ConfigError, match=r"unknown stress set 'fog'.*known: clutter"):
        parse_sets("clutter,fog")
    with pytest.raises(ConfigError, match="noise given twice"):
        parse_sets("noise,noise")
    with pytest.raises(ConfigError, match="unknown stress set 'fog'"):
        stress_config(DatasetConfig(), "fog")
    with pytest.raises(ConfigError, match=">= 1"):
        stress_samples(DatasetConfig(), 0)
    assert stress_samples(DatasetConfig(test_samples=50), 160) == 50


def test_default_range_scale_keeps_todays_datasets_byte_identical(tmp_path: Path) -> None:
    out = build_dataset(small_config(test_samples=8), tmp_path / "d", workers=1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "motion_range_scale" not in manifest["config"] and "test_id_offset" not in manifest["config"]
    assert manifest["config_sha256"] == GOLDEN["config_sha256"]
    for rel in ("train/clips.npy", "train/positions.npy", "test/clips.npy", "test/positions.npy"):
        assert manifest["files"][rel]["sha256"] == GOLDEN[rel], rel
    # Saying the default out loud is the same dataset (and the cache is reused for it).
    explicit = small_config(test_samples=8, motion_range_scale=1.0)
    assert load_dataset(out, expected_config=explicit).config == small_config(test_samples=8)


def _ranges(params: dict, label: int, duration: float) -> dict[str, float]:
    """The sizes the generator draws, read back from a trajectory's parameters."""
    if label == 0:
        return {"length": params["speed"] * duration}
    if label == 1:
        return {"radius": params["radius"], "sweep": params["omega"] * duration / math.pi}
    if label == 2:
        return {"radius": params["radius"], "sweep": params["omega"] * duration / math.pi}
    return {"sag": params["gravity"] * duration**2 / 8}


TRAINING_TOP = {
    0: {"length": 3.5},
    1: {"radius": 1.6, "sweep": 2.5},
    2: {"radius": 1.2, "sweep": 4.0},
    3: {"sag": 2.0},
}


@pytest.mark.parametrize("profile", ["quick", "seed"])
def test_beyond_range_motions_lie_outside_the_training_ranges(profile: str) -> None:
    base = load_profile(profile).dataset
    inside = TrajectoryGenerator.from_config(base)
    beyond = TrajectoryGenerator.from_config(stress_config(base, "beyond_range"))
    for label in range(4):
        for seed in range(20):
            t_in = inside.sample(label, np.random.default_rng(seed))
            t_out = beyond.sample(label, np.random.default_rng(seed))
            got_in = _ranges(t_in.params, label, inside.duration)
            got_out = _ranges(t_out.params, label, beyond.duration)
            for key, top in TRAINING_TOP[label].items():
                assert got_in[key] <= top + 1e-2, (label, key, got_in[key])
                assert got_out[key] >= top - 1e-2, (label, key, got_out[key])
                assert got_out[key] <= 1.5 * top + 1e-2
            # Still in view: every frame's disc inside the image (the generator's own contract).
            assert np.all(t_out.positions[:, 2] >= 4.0 - 1e-6)


def test_range_scale_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="motion_range_scale"):
        DatasetConfig(motion_range_scale=0.5)
    with pytest.raises(ValueError, match="range_scale must be >= 1"):
        TrajectoryGenerator(range_scale=0.9)


def test_a_stress_set_is_seeded_cached_and_twinned_with_the_test_split(tmp_path: Path) -> None:
    base = small_config(test_samples=12)
    data = tmp_path / "small"
    build_dataset(base, data, workers=1)
    first = build_stress_set(base, "clutter", data, samples=8, workers=1)
    assert first.path == stress_dir(data, "clutter") == tmp_path / "small-stress" / "clutter"
    assert not first.reused and first.counts["test"] == 8
    assert first.counts["train"] + first.counts["val"] == 8  # the fewest a dataset holds: no unused bulk
    again = build_stress_set(base, "clutter", data, samples=8, workers=1)
    assert again.reused
    other = build_stress_set(base, "clutter", tmp_path / "elsewhere", samples=8, workers=1, force=True)
    a, b = load_dataset(first.path), load_dataset(other.path)
    assert np.array_equal(a.test.clips, b.test.clips)  # same config, same bytes
    test = load_dataset(data).test
    # Scene-only factor: the same trajectories as the test split's first clips, in a busier scene.
    assert np.array_equal(a.test.sample_ids, test.sample_ids[:8])
    assert np.array_equal(a.test.positions, test.positions[:8])
    assert np.array_equal(a.test.labels, test.labels[:8])
    assert not np.array_equal(a.test.clips, test.clips[:8])
    # The unseen seed draws other trajectories.
    unseen = load_dataset(build_stress_set(base, "unseen_seed", data, samples=8, workers=1).path)
    assert not np.array_equal(unseen.test.positions, test.positions[:8])


def test_a_stress_set_can_be_cached_away_from_a_read_only_dataset(tmp_path: Path) -> None:
    """Compose mounts the dataset read-only in the reporter: the sets go to a root of their own."""
    base = small_config(test_samples=12)
    data = tmp_path / "small"
    build_dataset(base, data, workers=1)
    root = tmp_path / "stress-root"
    built = build_stress_set(base, "noise", data, samples=8, workers=1, root=root)
    assert built.path == stress_dir(data, "noise", root) == root / "noise"
    assert load_dataset(built.path).test.clips.shape[0] == 8
    assert not (tmp_path / "small-stress").exists()  # nothing written beside the dataset

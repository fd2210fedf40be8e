from __future__ import annotations

from pathlib import Path

import pytest

from trajlab.config import ServerSettings, load_settings
from trajlab.errors import ConfigError
from trajlab.profiles import CLASS_NAMES, load_branches, load_profile


def test_yaml_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 1234\nmax_workers: 3\n")
    s = load_settings(ServerSettings, cfg)
    assert (s.port, s.max_workers) == (1234, 3)
    monkeypatch.setenv("TRAJLAB_PORT", "2345")
    assert load_settings(ServerSettings, cfg).port == 2345
    assert load_settings(ServerSettings, cfg, port=3456).port == 3456


def test_bad_value_names_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: not-a-number\n")
    with pytest.raises(ConfigError, match=r"port: .*integer.*not-a-number"):
        load_settings(ServerSettings, cfg)


def test_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(ServerSettings, cfg)


def test_seed_profile_and_branches_match_the_design() -> None:
    seed = load_profile("seed")
    assert seed.dataset.samples == 1200 and seed.dataset.val_fraction == 0.2
    assert (seed.training.epochs, seed.training.batch_size, seed.training.lr) == (30, 16, 1e-3)
    assert seed.training.checkpoint_every == 5
    branches = load_branches()
    assert sorted(branches) == ["b1", "b2", "b3", "b4"]
    assert branches["b4"].enhancement == "none" and branches["b3"].enhancement == "text_alignment"
    assert CLASS_NAMES == ("linear", "circular", "helical", "parabolic")


def test_bad_profile_field_is_named(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ntraining:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        load_profile(p)
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_profile("nope")


def test_an_odd_clip_size_with_the_track_readout_is_refused_naming_the_field(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ndataset:\n  width: 33\n")
    with pytest.raises(ConfigError, match=r"dataset\.width must be even when model\.track is on"):
        load_profile(p)
    p.write_text("name: x\ndataset:\n  width: 33\nmodel:\n  track: false\n")
    assert load_profile(p).dataset.width == 33


def test_an_unknown_forecast_prior_is_refused_naming_the_field_and_the_choices(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: x\nmodel:\n  forecast_prior: cubic\n")
    with pytest.raises(ConfigError, match=r"model\.forecast_prior: .*'parametric' or 'affine'"):
        load_profile(p)
    p.write_text("name: x\nmodel:\n  forecast_prior: affine\n")
    assert load_profile(p).model.forecast_prior == "affine"
    assert load_profile("seed").model.forecast_prior == "parametric"
    assert load_profile("seed").training.track_classifier_noise is True  # on by default
    assert load_profile("seed").model.camera_shift == 4  # the trained jitter's margin, ceil(3 x 1.3)
    assert load_profile("seed").model.sphere_fit is True
    assert load_profile("quick").model.sphere_fit is False  # its cost on thin models: seed profile only
    p.write_text("name: x\nmodel:\n  sphere_fit: sometimes\n")
    with pytest.raises(ConfigError, match=r"model\.sphere_fit: "):
        load_profile(p)
    p.write_text("name: x\nmodel:\n  prior_refits: -1\n")
    with pytest.raises(ConfigError, match=r"model\.prior_refits: .*greater than or equal to 0"):
        load_profile(p)

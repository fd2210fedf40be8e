from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.encoder.settings import EncoderSettings
from trajlab.clients._channel import service_config
from trajlab.clipio import load_clip, save_clip
from trajlab.config import load_settings
from trajlab.errors import ConfigError, InvalidClip


def _clip(t: int = 6, h: int = 16, w: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", ["c.npy", "c.npz", "frames"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, name: str) -> None:
    clip = _clip()
    path = save_clip(tmp_path / name, clip, fps=12.0)
    got, fps = load_clip(path)
    np.testing.assert_array_equal(got, clip)
    assert fps == (12.0 if name.endswith(".npz") else 0.0)


@pytest.mark.parametrize("name", ["c.gif", "c.mp4"])
def test_videos_load_with_their_shape_and_frame_rate(tmp_path: Path, name: str) -> None:
    clip = np.zeros((6, 16, 20, 3), np.uint8)
    for t in range(6):  # a moving square; frames 4 and 5 equal (GIF writers merge those)
        clip[t, 4:10, min(t, 4) * 2 : min(t, 4) * 2 + 6] = 200  # flat areas survive palettes and H.264
    got, fps = load_clip(save_clip(tmp_path / name, clip, fps=10.0))
    assert got.shape == clip.shape and got.dtype == np.uint8
    assert fps == pytest.approx(10.0, rel=0.05)
    assert np.abs(got.astype(int) - clip).mean() < 10


def test_png_frames_are_read_in_natural_order_and_grey_becomes_rgb(tmp_path: Path) -> None:
    from PIL import Image

    d = tmp_path / "f"
    d.mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8), i * 10, np.uint8), mode="L").save(d / f"frame{i}.png")
    got, _ = load_clip(d)
    assert got.shape == (12, 8, 8, 3)
    assert [int(f[0, 0, 0]) for f in got] == [i * 10 for i in range(12)]


def test_stacks_npz_keys_and_bad_arrays(tmp_path: Path) -> None:
    stack = np.stack([_clip(), _clip() // 2])
    np.save(tmp_path / "s.npy", stack)
    np.testing.assert_array_equal(load_clip(tmp_path / "s.npy", index=1)[0], stack[1])
    with pytest.raises(InvalidClip, match="holds 2 clips"):
        load_clip(tmp_path / "s.npy", index=5)
    np.savez(tmp_path / "two.npz", a=_clip(), b=_clip())
    with pytest.raises(InvalidClip, match="several arrays"):
        load_clip(tmp_path / "two.npz")
    np.testing.assert_array_equal(load_clip(tmp_path / "two.npz", key="b")[0], _clip())
    np.save(tmp_path / "f.npy", _clip().astype(np.float32))
    with pytest.raises(InvalidClip, match="must be uint8"):
        load_clip(tmp_path / "f.npy")
    with pytest.raises(InvalidClip, match="unknown clip format"):
        load_clip((tmp_path / "x.txt").resolve()) if (tmp_path / "x.txt").write_text("x") else None
    with pytest.raises(InvalidClip, match="does not exist"):
        load_clip(tmp_path / "missing.npy")


def test_settings_from_env_and_bad_values_name_the_field(monkeypatch) -> None:
    monkeypatch.setenv("TRAJLAB_ENCODER_PORT", "6000")
    monkeypatch.setenv("TRAJLAB_ENCODER_BATCHING", "true")
    monkeypatch.setenv("TRAJLAB_ENCODER_PROVIDERS", '["CUDAExecutionProvider", "CPUExecutionProvider"]')
    s = load_settings(EncoderSettings)
    # "true" keeps its meaning from before adaptive batching: the time-window batcher.
    assert (s.port, s.batching, s.providers[0]) == (6000, "window", "CUDAExecutionProvider")
    monkeypatch.setenv("TRAJLAB_ENCODER_KEEP_VERSIONS", "0")
    with pytest.raises(ConfigError, match="keep_versions"):
        load_settings(EncoderSettings)
    monkeypatch.setenv("TRAJLAB_ENCODER_KEEP_VERSIONS", "2")
    monkeypatch.setenv("TRAJLAB_ENCODER_PROVIDERS", '["cuda"]')
    with pytest.raises(ConfigError, match="not an onnxruntime provider name"):
        load_settings(EncoderSettings)


def test_batching_defaults_to_off_and_names_the_modes_it_takes(monkeypatch) -> None:
    assert load_settings(EncoderSettings).batching == "off"
    for value, mode in [("false", "off"), ("adaptive", "adaptive"), ("window", "window"), ("off", "off")]:
        monkeypatch.setenv("TRAJLAB_ENCODER_BATCHING", value)
        assert load_settings(EncoderSettings).batching == mode
    monkeypatch.setenv("TRAJLAB_ENCODER_BATCHING", "sometimes")
    with pytest.raises(ConfigError, match="batching"):
        load_settings(EncoderSettings)


def test_retry_policy_covers_only_the_idempotent_methods_and_only_unavailable() -> None:
    cfg = json.loads(service_config([("pkg.Svc", "Get"), ("pkg.Other", None)]))
    (mc,) = cfg["methodConfig"]
    assert mc["name"] == [{"service": "pkg.Svc", "method": "Get"}, {"service": "pkg.Other"}]
    assert mc["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 2 <= mc["retryPolicy"]["maxAttempts"] <= 5
    assert json.loads(service_config([])) == {"methodConfig": []}

"""Clips as users have them: any size, length and frame rate, fitted to a model's input."""

from __future__ import annotations

import numpy as np
import pytest

from trajlab.clipadapt import Target, adapt_clip
from trajlab.errors import InvalidClip

MODEL = Target(frames=16, height=32, width=32, channels=3, fps=8.0)


def _clip(t: int, h: int, w: int) -> np.ndarray:
    """Frame i is filled with the value i, so which frames were kept can be read back."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


def test_a_phone_video_is_resampled_to_the_models_rate_keeping_its_last_window() -> None:
    # 3 s at 30 fps, 640x480: the model's 16 frames at 8 fps span 2 s, the clip's last 2 s.
    out = adapt_clip(_clip(90, 48, 64), 30.0, MODEL)
    assert out.clip.shape == (16, 32, 32, 3) and out.fps == 8.0
    kept = out.clip[:, 0, 0, 0].astype(int)
    assert kept[-1] == 89  # ends on the clip's last frame: a forecast continues from there
    assert np.all(np.diff(kept) >= 3) and np.all(np.diff(kept) <= 4)  # 30/8 = 3.75 frames apart
    text = " ".join(out.notes)
    assert "90 frames at 30 fps" in text and "kept the last 16" in text and "64x48" in text
    assert "aspect ratio changed" in text


def test_a_short_clip_is_padded_by_holding_its_first_frame() -> None:
    out = adapt_clip(_clip(5, 32, 32), 8.0, MODEL)
    assert out.clip[:, 0, 0, 0].tolist() == [0] * 12 + [1, 2, 3, 4]
    assert any("padded 5 frames to 16" in n for n in out.notes)


def test_a_clip_of_the_models_shape_and_rate_is_left_alone() -> None:
    clip = _clip(16, 32, 32)
    out = adapt_clip(clip, 8.0, MODEL)
    assert not out.changed and np.array_equal(out.clip, clip)


def test_resizing_averages_pixels_rather_than_dropping_them() -> None:
    clip = np.zeros((16, 64, 64, 3), np.uint8)
    clip[:, ::2, ::2] = 255  # a fine checkerboard-like pattern, a quarter of the pixels lit
    out = adapt_clip(clip, 8.0, MODEL)
    assert out.clip.mean() == pytest.approx(255 / 4, abs=1)  # box filter: the mean survives


@pytest.mark.parametrize(
    ("clip", "fps", "message"),
    [
        (_clip(1, 32, 32), 8.0, "at least 2 frames"),
        (np.zeros((0, 32, 32, 3), np.uint8), 8.0, "empty"),
        (_clip(16, 32, 32), float("nan"), "frame rate"),
        (np.zeros((16, 32, 32, 3), np.float32), 8.0, "uint8"),
    ],
)
def test_clips_that_cannot_be_adapted_are_refused_naming_the_file(clip, fps, message) -> None:
    with pytest.raises(InvalidClip, match=message) as exc:
        adapt_clip(clip, fps, MODEL, source="phone.mp4")
    assert "phone.mp4" in str(exc.value)


def test_strict_refuses_another_shape_with_the_expected_one() -> None:
    with pytest.raises(InvalidClip, match=r"\(16, 32, 32, 3\)"):
        adapt_clip(_clip(90, 48, 64), 30.0, MODEL, strict=True)

"""Clip codec: numpy arrays (T, H, W, C) uint8 <-> ``trajlab.common.v1.Clip``.

The Clip message carries raw uint8 bytes in THWC row-major order; its shape
fields must agree with the byte length. Decoding validates that before any
reshape, and refuses absurd shapes before allocating anything.
"""

from __future__ import annotations

import numpy as np

from trajlab.common.v1 import common_pb2
from trajlab.errors import InvalidClip

# Upper bounds that keep a malicious header from requesting a giant allocation.
MAX_FRAMES = 1024  # frames
MAX_SIDE = 4096  # pixels per side
ALLOWED_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA
# Frame rates a clip may state; 0 means "unknown: use the model's own". Outside this
# range forecast times are nonsense (+inf fps gives all-zero times, 1e-45 gives 1e46 s).
MIN_FPS = 0.01  # one frame per 100 s (time lapse)
MAX_FPS = 100_000.0  # high-speed cameras


def check_shape(frames: int, height: int, width: int, channels: int) -> None:
    """Raise InvalidClip naming the field when a clip shape is zero or absurd."""
    for name, value, upper in (
        ("clip.frames", frames, MAX_FRAMES),
        ("clip.height", height, MAX_SIDE),
        ("clip.width", width, MAX_SIDE),
    ):
        if value <= 0:
            raise InvalidClip(f"{name} must be > 0, got {value}")
        if value > upper:
            raise InvalidClip(f"{name} must be <= {upper}, got {value}")
    if channels not in ALLOWED_CHANNELS:
        raise InvalidClip(f"clip.channels must be one of {ALLOWED_CHANNELS}, got {channels}")


def check_fps(fps: float, field: str = "clip.fps") -> float:
    """``fps`` if it is 0 (the model's own) or within [MIN_FPS, MAX_FPS]; else InvalidClip."""
    value = float(fps)
    # Clip.fps is a float32 on the wire: 0.01 arrives as 0.00999999977; allow its rounding.
    if value == 0.0 or MIN_FPS * (1 - 1e-6) <= value <= MAX_FPS * (1 + 1e-6):  # NaN fails both
        return value
    raise InvalidClip(
        f"{field} must be 0 (the model's own frame rate) or between {MIN_FPS:g} and {MAX_FPS:g} "
        f"frames per second, got {value!r}"
    )


def clip_to_array(clip: common_pb2.Clip) -> np.ndarray:
    """Decode a Clip into a read-only (T, H, W, C) uint8 array without copying.

    Its ``fps`` is checked too (:func:`check_fps`), so no caller uses an absurd one."""
    t, h, w, c = int(clip.frames), int(clip.height), int(clip.width), int(clip.channels)
    check_shape(t, h, w, c)
    check_fps(clip.fps)
    expected = t * h * w * c
    pixels = clip.pixels  # read once: each read of a bytes field copies it out of the message
    got = len(pixels)
    if got != expected:
        raise InvalidClip(
            f"clip.pixels has {got} bytes but shape frames={t} height={h} width={w} "
            f"channels={c} needs {expected} (uint8, THWC)"
        )
    return np.frombuffer(pixels, dtype=np.uint8).reshape(t, h, w, c)


def array_to_clip(array: np.ndarray, fps: float = 0.0) -> common_pb2.Clip:
    """Encode a (T, H, W, C) or (T, H, W) uint8 array as a Clip."""
    arr = np.asarray(array)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise InvalidClip(f"clip array must have shape (T, H, W, C), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise InvalidClip(f"clip array must be uint8, got {arr.dtype}")
    t, h, w, c = (int(s) for s in arr.shape)
    check_shape(t, h, w, c)
    check_fps(fps, "fps")
    return common_pb2.Clip(
        frames=t,
        height=h,
        width=w,
        channels=c,
        pixels=np.ascontiguousarray(arr).tobytes(),
        fps=float(fps),
    )

"""Fit a clip as users have it (any size, length and frame rate) to a model's input.

A model takes exactly ``frames`` frames of ``height`` x ``width`` pixels, sampled at the
``fps`` it was trained on. A phone video is 640x480 at 30 fps for seconds. Adapting means:

- time: the clip is resampled to the model's frame rate (nearest frame at each of the
  model's instants), and the model's window is the *last* ``frames`` of those instants, so
  a forecast continues from where the user's clip ends; a clip shorter than the window is
  padded by repeating its first frame (the object waits there, then moves);
- space: each frame is resized to ``height`` x ``width`` with an antialiasing filter
  (Pillow's box filter when shrinking, bilinear when growing); the aspect ratio follows
  the model's, and a change of it is reported.

Every step taken is described in :attr:`Adapted.notes`, so the CLI can say what it did;
``strict`` refuses any clip that would need a step instead, naming the expected shape.
The servers never adapt: they answer INVALID_ARGUMENT with the expected shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trajlab.errors import InvalidClip

MIN_FRAMES = 2  # one frame shows no motion


@dataclass(frozen=True)
class Target:
    """What a model takes: frames x height x width x channels at ``fps`` frames per second."""

    frames: int
    height: int
    width: int
    channels: int
    fps: float


def target_of(input_shape: tuple[int, ...], fps: float) -> Target:
    """The Target of a served model from its ListModels entry (input_shape, metadata fps)."""
    frames, height, width, channels = (int(v) for v in input_shape)
    return Target(frames, height, width, channels, float(fps))


@dataclass(frozen=True)
class Adapted:
    clip: np.ndarray  # (frames, height, width, channels) uint8, the model's input shape
    fps: float  # the frame rate of ``clip``: the model's when time was resampled
    notes: list[str] = field(default_factory=list)  # each adaptation made, in words

    @property
    def changed(self) -> bool:
        return bool(self.notes)


def _resamples(fps: float, target: Target) -> bool:
    """A known frame rate other than the model's (within 0.1 %) is resampled to the model's."""
    return fps > 0 and not math.isclose(fps, target.fps, rel_tol=1e-3)


def fits_as_is(shape: tuple[int, ...], fps: float, target: Target) -> bool:
    """True when :func:`adapt_clip` would send a clip of this shape and fps unchanged (its
    fps may still be replaced by the model's when unknown, which the servers do themselves)."""
    return tuple(shape) == (target.frames, target.height, target.width, target.channels) and not _resamples(
        fps, target
    )


def _time_indices(n: int, fps: float, target: Target) -> tuple[np.ndarray, list[str]]:
    """Indices into the source frames for the model's window, and what was done."""
    notes: list[str] = []
    if _resamples(fps, target):
        duration = n / fps  # seconds the clip spans
        steps = max(1, math.floor(duration * target.fps + 1e-9))  # model instants inside it
        # The model's instants, counted back from the clip's last frame.
        instants = (n - 1) / fps - np.arange(steps)[::-1] / target.fps
        idx = np.clip(np.rint(instants * fps).astype(np.int64), 0, n - 1)
        notes.append(f"resampled {n} frames at {fps:g} fps to {steps} at the model's {target.fps:g} fps")
    else:
        idx = np.arange(n)
        if fps <= 0:
            notes_fps = f"the clip does not say its frame rate; taken as the model's {target.fps:g} fps"
            notes.append(notes_fps)
    if len(idx) > target.frames:
        notes.append(f"kept the last {target.frames} of {len(idx)} frames")
        idx = idx[-target.frames :]
    elif len(idx) < target.frames:
        pad = target.frames - len(idx)
        notes.append(f"padded {len(idx)} frames to {target.frames} by repeating the first frame {pad} times")
        idx = np.concatenate([np.full(pad, idx[0]), idx])
    return idx, notes


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    h, w = frames.shape[1:3]
    shrink = height <= h and width <= w
    method = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = np.empty((len(frames), height, width, frames.shape[3]), np.uint8)
    for i, frame in enumerate(frames):
        img = Image.fromarray(frame[..., 0] if frame.shape[2] == 1 else frame)
        arr = np.asarray(img.resize((width, height), method))
        out[i] = arr[..., None] if arr.ndim == 2 else arr
    return out


def adapt_clip(
    clip: np.ndarray, fps: float, target: Target, *, strict: bool = False, source: str = "clip"
) -> Adapted:
    """``clip`` (T, H, W, C) uint8 at ``fps`` (0 = unknown) -> the model's input, and what was done.

    ``strict`` refuses a clip of another shape instead of adapting it (the frame rate is then
    passed on as it is, as the servers take it). ``source`` names the clip in errors.
    """
    if clip.ndim != 4 or clip.dtype != np.uint8:
        raise InvalidClip(f"{source}: expected (T, H, W, C) uint8 frames, got {clip.dtype} {clip.shape}")
    if not math.isfinite(fps) or fps < 0:
        raise InvalidClip(f"{source}: frame rate {fps!r} is not a finite, non-negative number")
    t, h, w, c = clip.shape
    if t == 0 or h == 0 or w == 0:
        raise InvalidClip(f"{source}: the clip is empty ({t} frames of {h}x{w})")
    if c != target.channels:
        raise InvalidClip(f"{source}: {c} colour channels, the model takes {target.channels}")
    wanted = (target.frames, target.height, target.width, target.channels)
    if strict:
        if clip.shape != wanted:
            raise InvalidClip(
                f"{source}: shape {tuple(clip.shape)} (T, H, W, C) is not the model's {wanted}; "
                "drop --strict to resize and resample it"
            )
        return Adapted(clip, fps)
    if t < MIN_FRAMES:
        raise InvalidClip(f"{source}: {t} frame shows no motion; a clip needs at least {MIN_FRAMES} frames")
    idx, notes = _time_indices(t, fps, target)
    out = clip[idx]
    if (h, w) != (target.height, target.width):
        out = _resize(out, target.height, target.width)
        aspect = "" if h * target.width == w * target.height else " (aspect ratio changed)"
        notes.append(f"resized {w}x{h} to the model's {target.width}x{target.height}{aspect}")
    resampled = _resamples(fps, target)
    return Adapted(np.ascontiguousarray(out), target.fps if resampled or fps <= 0 else fps, notes)

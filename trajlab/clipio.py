"""Load clips from files: .npy/.npz arrays, a folder of PNG frames, or a GIF/MP4 video.

Every loader returns ``(clip, fps)``: a (T, H, W, C) uint8 array with ``channels``
colour channels (grey is repeated to RGB, alpha is dropped) and the file's frame
rate in frames per second (0.0 when the file does not say). Nothing is resized
here: ``trajlab.clipadapt`` fits a clip to a model's input and says what it did, and
the servers refuse clips of another size than their model's, naming the expected shape.

GIF is read with Pillow; MP4 and other videos with PyAV (the ``av`` package, which
ships FFmpeg's libraries: no system ffmpeg, and no ffmpeg subprocess, so reading and
writing videos is safe in a process that also runs gRPC threads, where fork() is not).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from trajlab.errors import InvalidClip

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
ARRAY_KEYS = ("clip", "clips", "frames", "video")


def _natural_key(p: Path) -> list[int | str]:
    # frame2.png before frame10.png
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def to_channels(clip: np.ndarray, channels: int = 3) -> np.ndarray:
    """(T, H, W) or (T, H, W, C) uint8 -> (T, H, W, ``channels``): grey repeated, alpha dropped."""
    if clip.dtype != np.uint8:
        raise InvalidClip(
            f"clip must be uint8 pixels, got {clip.dtype}; convert with (x * 255).round().astype(np.uint8)"
        )
    if clip.ndim == 3:
        clip = clip[..., None]
    if clip.ndim != 4:
        raise InvalidClip(f"clip must have shape (T, H, W, C) or (T, H, W), got {clip.shape}")
    c = clip.shape[-1]
    if c == channels:
        return np.ascontiguousarray(clip)
    if c == 1:
        return np.ascontiguousarray(np.repeat(clip, channels, axis=-1))
    if c == 4 and channels == 3:
        return np.ascontiguousarray(clip[..., :3])
    if c == 3 and channels == 1:
        grey = clip.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.clip(grey.round(), 0, 255).astype(np.uint8)[..., None]
    raise InvalidClip(f"cannot turn a clip with {c} channels into {channels} channels")


def _from_array(arr: np.ndarray, index: int, source: str) -> np.ndarray:
    if arr.ndim == 5:  # a stack of clips, e.g. a dataset split
        if not 0 <= index < arr.shape[0]:
            raise InvalidClip(f"{source} holds {arr.shape[0]} clips; --index {index} is out of range")
        arr = arr[index]
    return arr


def load_array(path: Path, *, key: str | None = None, index: int = 0) -> tuple[np.ndarray, float]:
    """A clip from .npy, or from .npz (``key``, else one of clip/clips/frames/video, else the only array).

    An .npz may carry a scalar ``fps`` array beside the clip.
    """
    if path.suffix == ".npy":
        return _from_array(np.load(path, allow_pickle=False), index, str(path)), 0.0
    with np.load(path, allow_pickle=False) as npz:
        rate = npz["fps"] if "fps" in npz.files else None  # each lookup reads the member again
        fps = float(rate) if rate is not None and rate.size == 1 else 0.0
        names = [n for n in npz.files if n != "fps"]
        if key is not None:
            if key not in names:
                raise InvalidClip(f"{path} has no array {key!r} (arrays: {', '.join(names)})")
            chosen = key
        else:
            found = [k for k in ARRAY_KEYS if k in names]
            if found:
                chosen = found[0]
            elif len(names) == 1:
                chosen = names[0]
            else:
                raise InvalidClip(f"{path} holds several arrays ({', '.join(names)}); name one with --key")
        return _from_array(npz[chosen], index, f"{path}[{chosen}]"), fps


def load_png_folder(path: Path) -> np.ndarray:
    """Frames from every *.png in a folder, in natural name order (frame2 before frame10)."""
    from PIL import Image

    files = sorted((p for p in path.iterdir() if p.suffix.lower() == ".png"), key=_natural_key)
    if not files:
        raise InvalidClip(f"{path} holds no .png frames")
    frames = []
    for f in files:
        with Image.open(f) as im:
            frames.append(
                np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB"))
            )
    shapes = {fr.shape[:2] for fr in frames}
    if len(shapes) != 1:
        raise InvalidClip(f"the frames in {path} differ in size: {sorted(shapes)}")
    return np.stack([to_channels(fr[None], 3)[0] for fr in frames])


def load_gif(path: Path) -> tuple[np.ndarray, float]:
    """Frames of a GIF and its frame rate.

    GIF writers (Pillow among them) merge identical consecutive frames into one
    frame shown longer; such frames are repeated here, so a clip of T frames
    comes back with T frames. The frame rate is 1 / the shortest frame duration.
    """
    from PIL import Image, ImageSequence

    frames: list[np.ndarray] = []
    durations: list[float] = []  # milliseconds per frame
    with Image.open(path) as im:
        for frame in ImageSequence.Iterator(im):
            frames.append(np.asarray(frame.convert("RGB")))
            durations.append(float(frame.info.get("duration") or 0.0))
    shortest = min((d for d in durations if d > 0), default=0.0)
    if shortest <= 0:
        return np.stack(frames), 0.0
    repeats = [max(1, round(d / shortest)) if d > 0 else 1 for d in durations]
    return np.stack([f for f, r in zip(frames, repeats, strict=True) for _ in range(r)]), 1000.0 / shortest


def load_video(path: Path) -> tuple[np.ndarray, float]:
    """Every frame of a GIF or video file, and its frame rate (0.0 when unknown)."""
    import imageio.v3 as iio

    if path.suffix.lower() == ".gif":
        return load_gif(path)
    try:
        frames = iio.imread(path, index=None, plugin="pyav")
        meta = iio.immeta(path, plugin="pyav")
    except ImportError as exc:
        raise InvalidClip(f"reading {path.suffix} files needs the av (PyAV) package: {exc}") from None
    return frames, float(meta.get("fps") or 0.0)


def load_clip(
    path: str | Path,
    *,
    channels: int = 3,
    key: str | None = None,
    index: int = 0,
) -> tuple[np.ndarray, float]:
    """Load ``path`` as a (T, H, W, ``channels``) uint8 clip and its fps (0.0 if unknown)."""
    p = Path(path)
    if not p.exists():
        raise InvalidClip(f"{p} does not exist")
    fps = 0.0
    try:
        if p.is_dir():
            clip = load_png_folder(p)
        elif p.suffix in (".npy", ".npz"):
            clip, fps = load_array(p, key=key, index=index)
        elif p.suffix.lower() == ".gif" or p.suffix.lower() in VIDEO_SUFFIXES:
            clip, fps = load_video(p)
        else:
            raise InvalidClip(
                f"{p}: unknown clip format {p.suffix!r} "
                "(use .npy, .npz, a folder of .png frames, .gif or .mp4)"
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, InvalidClip):
            raise
        raise InvalidClip(f"cannot read {p}: {exc}") from None
    return to_channels(np.asarray(clip), channels), fps


def save_clip(path: str | Path, clip: np.ndarray, fps: float = 8.0) -> Path:
    """Write a (T, H, W, C) uint8 clip as .npy, .npz (key "clip"), a PNG folder, .gif or .mp4."""
    import imageio.v3 as iio

    p = Path(path)
    clip = to_channels(np.asarray(clip), 3)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        np.save(p, clip)
    elif suffix == ".npz":
        np.savez_compressed(p, clip=clip, fps=np.float32(fps))
    elif suffix == ".gif":
        iio.imwrite(p, clip, duration=1000.0 / fps, loop=0)
    elif suffix in VIDEO_SUFFIXES:
        if clip.shape[1] % 2 or clip.shape[2] % 2:
            raise InvalidClip(
                f"H.264 (yuv420p) needs an even height and width, got {clip.shape[1]}x{clip.shape[2]}"
            )
        iio.imwrite(p, clip, fps=fps, plugin="pyav", codec="libx264")
    elif suffix == "":
        p.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(len(clip))))
        for i, frame in enumerate(clip):
            iio.imwrite(p / f"frame{i:0{width}d}.png", frame)
    else:
        raise InvalidClip(f"{p}: unknown clip format {p.suffix!r}")
    return p

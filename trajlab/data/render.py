"""Render a trajectory into a clip: vectorised numpy, drawing only where objects are.

What a clip shows (all through the pinhole :class:`~trajlab.data.camera.Camera`):

- a static textured background: a dark, nearly grey tint, a vertical gradient, two
  sinusoidal gratings and uniform noise of standard deviation ``background_noise`` grey levels
  (uniform rather than Gaussian: it is four times cheaper to draw and the models do
  not care);
- static clutter drawn into that background: flat coloured squares and shaded grey
  spheres;
- the moving sphere: Lambertian shading (light from the upper left, behind the
  camera, ambient 0.35), apparent radius ``f * R / z`` pixels and brightness
  ``sqrt(4 / z)`` of its full colour, so both size and brightness tell the depth;
  its edge is anti-aliased by pixel coverage, so the coverage-weighted centroid of
  its pixels is its projected centre;
- transient objects (flat squares or discs of a bright colour, size ``f * S / depth``)
  that appear at a frame >= 1, move in a straight line between two points in the
  central 80 % of the image (so they are on screen whenever present) and vanish
  before the last frame; each has a depth in [4, 10], and is drawn in front of the
  sphere on the frames where it is nearer;
- optional camera jitter: a whole-pixel shift of the entire view per frame,
  ``round(N(0, camera_jitter))``, applied to background, clutter and objects alike.

Every object is drawn through :mod:`trajlab.data.raster`, inside its bounding box only, for
all frames of a batch of clips at once. :func:`render_clip_fullframe` draws the same scene
over every pixel of every frame, the straightforward way, and gives identical bytes: it
exists so tests and the benchmark can compare against it.

Random draws come in a fixed order with fixed sizes (the tables of clutter and
transients are always drawn for their maximum counts), so changing the number of
clutter objects leaves the background, the sphere and the transients unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajlab.data.camera import Camera, apparent_radius, project
from trajlab.data.raster import AMBIENT, LIGHT_DIRECTION, draw_disc, draw_square
from trajlab.profiles import DatasetConfig

__all__ = [
    "AMBIENT",
    "LIGHT_DIRECTION",
    "Z_REF",
    "Camera",
    "RenderInfo",
    "RenderSettings",
    "apparent_radius",
    "project",
    "render_batch",
    "render_clip",
    "render_clip_fullframe",
]

# How the moving sphere is dimmed with depth (public: a model may fit this scene model to a
# frame; its lighting, LIGHT_DIRECTION and AMBIENT, is the rasteriser's shaded disc).
Z_REF = 4.0  # world units: depth at which brightness is the full colour; sqrt(Z_REF / z) beyond
_Z_REF = Z_REF
_MAX_CLUTTER = 16  # table sizes drawn every clip (= DatasetConfig's upper bounds)
_MAX_TRANSIENTS = 8


@dataclass(frozen=True)
class RenderSettings:
    """Everything the renderer needs besides the positions and the random generator."""

    camera: Camera
    sphere_radius: float = 0.45  # world units
    clutter: int = 0  # static distractors per clip
    transients: int = 0  # objects appearing and vanishing mid-clip
    background_noise: float = 8.0  # std of the background noise, grey levels
    camera_jitter: float = 0.0  # std of the per-frame view shift, pixels (rounded to whole pixels)

    @classmethod
    def from_config(cls, config: DatasetConfig) -> RenderSettings:
        return cls(
            camera=Camera(config.width, config.height, config.fov_degrees),
            sphere_radius=config.sphere_radius,
            clutter=config.clutter,
            transients=config.transients,
            background_noise=config.background_noise,
            camera_jitter=config.camera_jitter,
        )

    @property
    def jitter_margin(self) -> int:
        """Largest shift in pixels (3 sigma, whole pixels): the background is drawn this much wider."""
        return math.ceil(3.0 * self.camera_jitter)


@dataclass
class RenderInfo:
    """Where things were drawn, in frame pixels (for tests and previews)."""

    centers: np.ndarray  # (T, 2) u, v of the sphere's centre, jitter included
    radii: np.ndarray  # (T,) apparent radius of the sphere, pixels
    shifts: np.ndarray  # (T, 2) int: the camera jitter's shift (du, dv) per frame
    clutter: list[dict[str, Any]] = field(default_factory=list)  # kind, u, v, size (no jitter)
    transients: list[dict[str, Any]] = field(default_factory=list)  # kind, first, last, u, v, size, depth


# -- the scene ---------------------------------------------------------------------------


@dataclass
class _Tables:
    """A clip's random numbers, drawn in a fixed order with fixed sizes."""

    misc: np.ndarray  # (12,) tint, gradient, gratings, sphere colour, grey level
    jitter: np.ndarray  # (T, 2) standard normal
    transients: np.ndarray  # (_MAX_TRANSIENTS, 10)
    clutter: np.ndarray  # (_MAX_CLUTTER, 8)
    noise: np.ndarray | None  # (Hp, Wp) float32 uniform [0, 1)


def _draw_tables(rng: np.random.Generator, frames: int, settings: RenderSettings) -> _Tables:
    n_misc, n_tr, n_cl = 12, _MAX_TRANSIENTS * 10, _MAX_CLUTTER * 8
    flat = rng.random(n_misc + n_tr + n_cl)
    jit = rng.standard_normal((frames, 2)) if settings.camera_jitter > 0 else np.zeros((frames, 2))
    hp = settings.camera.height + 2 * settings.jitter_margin
    wp = settings.camera.width + 2 * settings.jitter_margin
    noise = rng.random((hp, wp), dtype=np.float32) if settings.background_noise > 0 else None
    return _Tables(
        misc=flat[:n_misc],
        jitter=jit,
        transients=flat[n_misc : n_misc + n_tr].reshape(_MAX_TRANSIENTS, 10),
        clutter=flat[n_misc + n_tr :].reshape(_MAX_CLUTTER, 8),
        noise=noise,
    )


def _hsv_rows(h: np.ndarray, s: np.ndarray, v: float) -> np.ndarray:
    """HSV rows in [0, 1] to RGB rows in [0, 255]: (N,) -> (N, 3)."""
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None] * 6.0) % 6.0
    return 255.0 * v * (1.0 - s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


@dataclass
class _BatchInfo:
    centers: np.ndarray  # (N, T, 2)
    radii: np.ndarray  # (N, T)
    shifts: np.ndarray  # (N, T, 2)
    clutter: list[list[dict[str, Any]]]
    transients: list[list[dict[str, Any]]]


def _render_batch(
    positions: np.ndarray,  # (N, T, 3)
    settings: RenderSettings,
    tables: list[_Tables],
    out: np.ndarray | None,
    full: bool,
    want_info: bool,
) -> tuple[np.ndarray, _BatchInfo | None]:
    """Draw N clips (into ``out`` when given) from their tables: background and clutter, the
    jittered frames, then per frame the transients behind the sphere, the sphere, those in front.
    ``full``: rasterise over whole frames (the reference); ``want_info``: also say where things are."""
    cam = settings.camera
    H, W = cam.height, cam.width
    N, T = positions.shape[:2]
    m = settings.jitter_margin
    misc = np.stack([tb.misc for tb in tables])  # (N, 8)
    shifts = np.clip(np.rint(np.stack([tb.jitter for tb in tables]) * settings.camera_jitter), -m, m)
    shifts = shifts.astype(np.int64)  # (N, T, 2)

    bg = _background(misc, tables, settings)
    clutter_info = _draw_clutter(bg, tables, settings, full, want_info)
    clips = _frames(bg, shifts, m, (H, W), out)
    canvas = clips.reshape(-1, 3)
    frames = np.arange(N * T)

    # The sphere's projection, size and brightness at each frame.
    pos = positions.reshape(-1, 3)
    z = pos[:, 2]
    u, v = project(pos, cam)
    u = u + shifts[:, :, 0].ravel()
    v = v + shifts[:, :, 1].ravel()
    r = apparent_radius(z, settings.sphere_radius, cam)
    colour = _hsv_rows(misc[:, 8], 0.6 + 0.35 * misc[:, 9], 1.0)  # (N, 3): a saturated, bright hue
    per_frame = np.repeat(colour, T, axis=0) * np.sqrt(np.minimum(_Z_REF / z, 1.0))[:, None]

    # Transients are drawn behind or in front of the sphere, frame by frame.
    transients, trans_info = _transients(tables, settings, shifts, z, want_info)
    _draw_transients(canvas, frames, transients, False, (H, W), full)
    draw_disc(canvas, frames, u, v, r, per_frame, True, (H, W), full)
    _draw_transients(canvas, frames, transients, True, (H, W), full)

    info = None
    if want_info:
        info = _BatchInfo(
            centers=np.stack([u, v], axis=1).reshape(N, T, 2),
            radii=r.reshape(N, T),
            shifts=shifts,
            clutter=clutter_info,
            transients=trans_info,
        )
    return clips, info


def _background(misc: np.ndarray, tables: list[_Tables], settings: RenderSettings) -> np.ndarray:
    """Each clip's background, ``jitter_margin`` wider on every side: uint8 (N, Hp, Wp, 3).

    Tint + vertical gradient + two gratings + noise.
    """
    m = settings.jitter_margin
    Hp, Wp = settings.camera.height + 2 * m, settings.camera.width + 2 * m
    m32 = misc.astype(np.float32)[:, :, None, None]  # (N, 8, 1, 1)
    yy = (np.arange(Hp, dtype=np.float32) / Hp)[None, :, None]
    xx = (np.arange(Wp, dtype=np.float32) / Wp)[None, None, :]
    lum = (m32[:, 3] - np.float32(0.5)) * np.float32(50.0) * (yy - np.float32(0.5))  # +-25 grey levels
    for g in range(2):
        a, k = m32[:, 4 + 2 * g], m32[:, 5 + 2 * g]
        ky = a * np.float32(7.0) % np.float32(1.0)
        phase = np.float32(2 * np.pi) * ((np.float32(2) + 6 * k) * xx + (np.float32(2) + 6 * ky) * yy)
        lum = lum + (np.float32(4.0) + np.float32(8.0) * a) * np.sin(phase + k * np.float32(13.0))
    if settings.background_noise > 0:
        noise = np.stack([tb.noise for tb in tables])  # type: ignore[misc]
        # Uniform on [-a, a] has std a / sqrt(3).
        lum = lum + (noise - np.float32(0.5)) * np.float32(2.0 * math.sqrt(3.0) * settings.background_noise)
    # A dark, nearly grey tint (grey 40-80, +-8 per channel), so the coloured sphere stands out.
    grey = np.float32(40.5) + np.float32(40.0) * m32[:, 10, 0, 0]  # + 0.5: round, not truncate
    tint = grey[:, None] + np.float32(16.0) * (m32[:, 0:3, 0, 0] - np.float32(0.5))
    bg = lum[..., None] + tint[:, None, None, :]
    np.maximum(bg, 0.0, out=bg)
    np.minimum(bg, 255.0, out=bg)
    return bg.astype(np.uint8)


def _draw_clutter(
    bg: np.ndarray, tables: list[_Tables], settings: RenderSettings, full: bool, want_info: bool
) -> list[list[dict[str, Any]]]:
    """Draw the static clutter into the backgrounds ``bg`` (in place); per clip, what was drawn."""
    N, Hp, Wp = bg.shape[:3]
    H, W = settings.camera.height, settings.camera.width
    m = settings.jitter_margin
    bg_flat = bg.reshape(-1, 3)
    items = np.arange(N)
    clutter_info: list[list[dict[str, Any]]] = [[] for _ in range(N)]
    for c in range(settings.clutter):
        p = np.stack([tb.clutter[c] for tb in tables])  # (N, 8)
        u, v = p[:, 1] * W, p[:, 2] * H
        size = (0.04 + 0.06 * p[:, 3]) * W  # pixels: half-side or radius
        square = p[:, 0] < 0.5
        colour = np.where(square[:, None], 60.0 + 150.0 * p[:, 4:7], (110.0 + 100.0 * p[:, 4:5]) * np.ones(3))
        if square.any():
            draw_square(bg_flat, items, u + m, v + m, size, colour, (Hp, Wp), full, square)
        if not square.all():
            draw_disc(bg_flat, items, u + m, v + m, size, colour, True, (Hp, Wp), full, ~square)
        if want_info:
            for n in range(N):
                clutter_info[n].append(
                    {
                        "kind": "square" if square[n] else "grey_sphere",
                        "u": float(u[n]),
                        "v": float(v[n]),
                        "size": float(size[n]),
                        "color": colour[n].tolist(),
                    }
                )
    return clutter_info


def _frames(
    bg: np.ndarray, shifts: np.ndarray, m: int, shape: tuple[int, int], out: np.ndarray | None
) -> np.ndarray:
    """Every frame's view of its clip's background, shifted by the camera jitter: (N, T, H, W, 3)."""
    H, W = shape
    N, T = shifts.shape[:2]
    # A plain ndarray view: indexing a np.memmap goes through slow Python-level __getitem__.
    clips = np.asarray(out) if out is not None else np.empty((N, T, H, W, 3), dtype=np.uint8)
    if m == 0:
        clips[:] = bg[:, None]
    else:
        # One broadcast copy of the unshifted view, then a slice copy per shifted frame (most
        # frames are not shifted at small jitter).
        clips[:] = bg[:, None, m : m + H, m : m + W]
        for n, t in zip(*np.nonzero(shifts.any(axis=2)), strict=True):
            r0, c0 = m - shifts[n, t, 1], m - shifts[n, t, 0]
            clips[n, t] = bg[n, r0 : r0 + H, c0 : c0 + W]
    return clips


@dataclass
class _Transient:
    """One transient slot over the N*T frames of a batch (its ``active`` frames are drawn)."""

    u: np.ndarray  # (N*T,) pixels, jitter included
    v: np.ndarray
    size: np.ndarray  # (N*T,) half-side or radius, pixels
    colour: np.ndarray  # (N*T, 3)
    active: np.ndarray  # (N*T,) bool: present on the frame
    front: np.ndarray  # (N*T,) bool: nearer than the sphere on the frame
    square: np.ndarray  # (N*T,) bool: a square, else a disc


def _transients(
    tables: list[_Tables], settings: RenderSettings, shifts: np.ndarray, z: np.ndarray, want_info: bool
) -> tuple[list[_Transient], list[list[dict[str, Any]]]]:
    """Each transient slot's frames, path, depth and look; per clip, what was drawn (``want_info``).

    ``z`` is the sphere's depth on each of the N*T frames.
    """
    N, T = shifts.shape[:2]
    H, W = settings.camera.height, settings.camera.width
    f = settings.camera.focal_px
    t_idx = np.tile(np.arange(T), N)  # frame within its clip, for each of the N*T frames
    trans_draws: list[_Transient] = []
    trans_info: list[list[dict[str, Any]]] = [[] for _ in range(N)]
    for k in range(settings.transients):
        p = np.stack([tb.transients[k] for tb in tables])  # (N, 10)
        first = 1 + (p[:, 1] * (T - 3)).astype(np.int64)  # appears at frame >= 1 ...
        last = np.minimum(first + 2 + (p[:, 2] * (T // 2 - 1)).astype(np.int64), T - 1)  # ... gone by T-1
        depth = 4.0 + 6.0 * p[:, 7]
        size = f * (0.25 + 0.3 * p[:, 8]) / depth
        rel = t_idx - np.repeat(first, T)
        # Straight from one point to another, both in the central 80 % of the image, so it is
        # on screen on every frame it is present.
        frac = rel / np.repeat(np.maximum(last - first - 1, 1), T)
        tu = np.repeat((0.1 + 0.8 * p[:, 3]) * W, T) + np.repeat((p[:, 5] - p[:, 3]) * 0.8 * W, T) * frac
        tv = np.repeat((0.1 + 0.8 * p[:, 4]) * H, T) + np.repeat((p[:, 6] - p[:, 4]) * 0.8 * H, T) * frac
        tu = tu + shifts[:, :, 0].ravel()
        tv = tv + shifts[:, :, 1].ravel()
        active = (rel >= 0) & (t_idx < np.repeat(last, T))
        front = np.repeat(depth, T) < z
        square = np.repeat(p[:, 0] < 0.5, T)
        col = np.repeat(_hsv_rows(p[:, 9], np.full(N, 0.8), 1.0), T, axis=0)
        trans_draws.append(_Transient(tu, tv, np.repeat(size, T), col, active, front, square))
        if want_info:
            for n in range(N):
                sl = slice(n * T + first[n], n * T + last[n])
                trans_info[n].append(
                    {
                        "kind": "square" if p[n, 0] < 0.5 else "disc",
                        "first": int(first[n]),
                        "last": int(last[n]) - 1,  # last frame it is visible on
                        "u": tu[sl].tolist(),
                        "v": tv[sl].tolist(),
                        "size": float(size[n]),
                        "depth": float(depth[n]),
                        "color": col[n * T].tolist(),
                    }
                )
    return trans_draws, trans_info


def _draw_transients(
    canvas: np.ndarray,
    frames: np.ndarray,
    transients: list[_Transient],
    in_front: bool,
    shape: tuple[int, int],
    full: bool,
) -> None:
    """Draw the transients on the frames where they are present and in front of (or behind) the sphere."""
    for tr in transients:
        # Only the frames where each is shown: a transient is on screen for a few frames.
        for is_square in (True, False):
            sel = np.flatnonzero(tr.active & (tr.front == in_front) & (tr.square == is_square))
            if not sel.size:
                continue
            args = (canvas, frames[sel], tr.u[sel], tr.v[sel], tr.size[sel], tr.colour[sel])
            if is_square:
                draw_square(*args, shape, full)
            else:
                draw_disc(*args, False, shape, full)


def render_batch(
    positions: np.ndarray,
    settings: RenderSettings,
    rngs: Sequence[np.random.Generator],
    out: np.ndarray | None = None,
    *,
    full_frame: bool = False,
) -> np.ndarray:
    """Render N clips at once: ``positions`` (N, T, 3) world units, one generator per clip.

    Gives the same bytes as N calls of :func:`render_clip` (each clip draws only from its
    own generator; clips never share pixels), just with far fewer numpy calls.
    Returns uint8 (N, T, H, W, 3), written into ``out`` when given.
    """
    pos = np.asarray(positions, dtype=np.float64)
    tables = [_draw_tables(rng, pos.shape[1], settings) for rng in rngs]
    clips, _ = _render_batch(pos, settings, tables, out, full_frame, want_info=False)
    return clips


def render_clip(
    positions: np.ndarray,
    settings: RenderSettings,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
    *,
    full_frame: bool = False,
) -> tuple[np.ndarray, RenderInfo]:
    """Render the sphere at ``positions`` ((T, 3) world units, one row per frame).

    Returns the clip, uint8 (T, H, W, 3), written into ``out`` when given, and a
    :class:`RenderInfo` saying where things were drawn. ``full_frame=True`` rasterises
    over every pixel instead of bounding boxes (the slow reference; same bytes).
    """
    pos = np.asarray(positions, dtype=np.float64)[None]
    tables = [_draw_tables(rng, pos.shape[1], settings)]
    clips, binfo = _render_batch(
        pos, settings, tables, None if out is None else out[None], full_frame, want_info=True
    )
    assert binfo is not None
    info = RenderInfo(
        centers=binfo.centers[0],
        radii=binfo.radii[0],
        shifts=binfo.shifts[0],
        clutter=binfo.clutter[0],
        transients=binfo.transients[0],
    )
    return clips[0], info


def render_clip_fullframe(
    positions: np.ndarray,
    settings: RenderSettings,
    rng: np.random.Generator,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, RenderInfo]:
    """The same scene rasterised over every pixel of every frame (reference; slower)."""
    return render_clip(positions, settings, rng, out, full_frame=True)

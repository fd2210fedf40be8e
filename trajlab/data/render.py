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

Each object is rasterised inside its bounding box only, for all frames of a batch of
clips at once (one ``(items, box, box)`` grid); the covered pixels are selected first,
and only they are shaded, gathered and scattered (through flat byte indices).
:func:`render_clip_fullframe` draws the same scene over every pixel of every frame, the
straightforward way, and gives identical bytes: it exists so tests and the benchmark
can compare against it.

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

# How the moving sphere is lit and dimmed (public: a model may fit this scene model to a frame).
LIGHT_DIRECTION = (-0.45, 0.55, 0.70)  # (right, up, to camera), normalised below
AMBIENT = 0.35  # share of a colour seen on the unlit side
Z_REF = 4.0  # world units: depth at which brightness is the full colour; sqrt(Z_REF / z) beyond
_LIGHT = np.array(LIGHT_DIRECTION) / np.linalg.norm(LIGHT_DIRECTION)
_AMBIENT = AMBIENT
_Z_REF = Z_REF
_MAX_CLUTTER = 16  # table sizes drawn every clip (= DatasetConfig's upper bounds)
_MAX_TRANSIENTS = 8
_RGB = np.arange(3)


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


# -- rasterising primitives ------------------------------------------------------------


@dataclass
class _Grid:
    """Pixels around K centres: boxes (K,B,B), or the whole image (K,H,W) for the reference."""

    i0: np.ndarray  # (K,) int: row of each box's first row (0 for the whole image)
    j0: np.ndarray  # (K,) int: column of each box's first column
    dx: np.ndarray  # (K,1,B) float32: pixel centre minus centre, horizontally
    dy: np.ndarray  # (K,B,1) float32: the same, vertically
    inside: bool  # every box lies inside the image (no bounds test needed)


def _grid(us: np.ndarray, vs: np.ndarray, half: float, height: int, width: int, full: bool) -> _Grid:
    if full:
        i0 = np.zeros(len(us), dtype=np.int64)
        j0 = np.zeros(len(us), dtype=np.int64)
        rows, cols = np.arange(height), np.arange(width)
        inside = True
    else:
        b = math.ceil(half + 1.5)  # box half-width: covers the anti-aliased edge wherever the centre falls
        i0 = np.floor(vs).astype(np.int64) - b
        j0 = np.floor(us).astype(np.int64) - b
        rows = cols = np.arange(2 * b + 1)
        inside = bool(
            i0.min() >= 0 and j0.min() >= 0 and i0.max() + 2 * b < height and j0.max() + 2 * b < width
        )
    # float32 from here on: sub-pixel offsets need ~1e-4 px, and the box arithmetic halves in cost.
    dx = ((j0[:, None] + cols[None, :]) + 0.5 - us[:, None]).astype(np.float32)[:, None, :]
    dy = ((i0[:, None] + rows[None, :]) + 0.5 - vs[:, None]).astype(np.float32)[:, :, None]
    return _Grid(i0, j0, dx, dy, inside)


def _select(
    cov: np.ndarray, g: _Grid, frames: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The covered, in-image pixels: (item, box row, box column) and flat indices into (T*H*W).

    Everything after this works on the selected pixels only: a disc covers about a fifth
    of a box sized for the largest disc of the batch.
    """
    k, a, c = np.nonzero(cov > 0)
    ii = g.i0[k] + a
    jj = g.j0[k] + c
    if not g.inside:
        ok = (ii >= 0) & (ii < height) & (jj >= 0) & (jj < width)
        k, a, c, ii, jj = k[ok], a[ok], c[ok], ii[ok], jj[ok]
    return k, a, c, (frames[k] * height + ii) * width + jj


def _blend(canvas: np.ndarray, flat: np.ndarray, cov: np.ndarray, colour: np.ndarray) -> None:
    """canvas[flat] = mix(canvas[flat], colour, cov); canvas is (N, 3) uint8, colour (n, 3) or (3,)."""
    # Byte indices into the flat buffer: 1-D fancy indexing is ~30 % faster than (n, 3) rows.
    flat_bytes = canvas.reshape(-1)
    idx = (flat * 3)[:, None] + _RGB
    px = flat_bytes[idx]
    out = px + cov[:, None] * (colour - px)  # float64: uint8 promotes
    out += 0.5
    flat_bytes[idx] = out.astype(np.uint8)


def _shade(dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Lambertian intensity (ambient included) of a sphere at pixel offsets from its centre."""
    nx = dx / r
    ny = -dy / r  # image v points down, world y up
    # Anti-aliased rim pixels lie just outside the disc: clamp their normal to the rim.
    norm = np.sqrt(np.maximum(nx * nx + ny * ny, np.float32(1.0)))
    nx = nx / norm
    ny = ny / norm
    nz = np.sqrt(np.maximum(np.float32(1.0) - nx * nx - ny * ny, np.float32(0.0)))
    lx, ly, lz = (np.float32(c) for c in _LIGHT)
    lam = np.maximum(nx * lx + ny * ly + nz * lz, np.float32(0.0))
    return np.float32(_AMBIENT) + np.float32(1.0 - _AMBIENT) * lam


def _coverage(edge: np.ndarray) -> np.ndarray:
    """Pixel coverage from the signed distance to the edge (+ inside), clipped to [0, 1]."""
    return np.minimum(np.maximum(edge, np.float32(0.0)), np.float32(1.0))


def _draw_disc(
    canvas: np.ndarray,
    frames: np.ndarray,
    us: np.ndarray,
    vs: np.ndarray,
    rs: np.ndarray,
    colour: np.ndarray,  # (3,) or (K, 3): per-item colour
    shaded: bool,
    shape: tuple[int, int],
    full: bool,
    keep: np.ndarray | None = None,  # (K,) bool: items to draw (others skipped)
) -> None:
    height, width = shape
    g = _grid(us, vs, float(rs.max()), height, width, full)
    r = rs.astype(np.float32)
    cov = _coverage(r[:, None, None] + np.float32(0.5) - np.sqrt(g.dx * g.dx + g.dy * g.dy))
    if keep is not None:
        cov = cov * keep[:, None, None]
    k, a, c, flat = _select(cov, g, frames, height, width)
    if not flat.size:
        return
    per_px = _pixel_colours(colour, k)
    if shaded:
        per_px = per_px * _shade(g.dx[k, 0, c], g.dy[k, a, 0], r[k])[:, None]
    _blend(canvas, flat, cov[k, a, c], per_px)


def _draw_square(
    canvas: np.ndarray,
    frames: np.ndarray,
    us: np.ndarray,
    vs: np.ndarray,
    half: np.ndarray,
    colour: np.ndarray,
    shape: tuple[int, int],
    full: bool,
    keep: np.ndarray | None = None,
) -> None:
    height, width = shape
    g = _grid(us, vs, float(half.max()), height, width, full)
    h = half.astype(np.float32)[:, None, None] + np.float32(0.5)
    cov = _coverage(h - np.abs(g.dx)) * _coverage(h - np.abs(g.dy))
    if keep is not None:
        cov = cov * keep[:, None, None]
    k, a, c, flat = _select(cov, g, frames, height, width)
    if flat.size:
        _blend(canvas, flat, cov[k, a, c], _pixel_colours(colour, k))


def _pixel_colours(colour: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(3,) or (K, 3) colours -> (1, 3), or one row per selected pixel (item index ``k``)."""
    col = np.asarray(colour, dtype=np.float64)
    return col[None, :] if col.ndim == 1 else col[k]


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
    cam = settings.camera
    H, W = cam.height, cam.width
    N, T = positions.shape[:2]
    f = cam.focal_px
    m = settings.jitter_margin
    Hp, Wp = H + 2 * m, W + 2 * m
    misc = np.stack([tb.misc for tb in tables])  # (N, 8)
    shifts = np.clip(np.rint(np.stack([tb.jitter for tb in tables]) * settings.camera_jitter), -m, m)
    shifts = shifts.astype(np.int64)  # (N, T, 2)

    # Background: tint + vertical gradient + two gratings + noise, then clutter on top.
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
    bg = bg.astype(np.uint8)  # (N, Hp, Wp, 3)

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
            _draw_square(bg_flat, items, u + m, v + m, size, colour, (Hp, Wp), full, square)
        if not square.all():
            _draw_disc(bg_flat, items, u + m, v + m, size, colour, True, (Hp, Wp), full, ~square)
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

    # Transients: frames, paths, depths; drawn behind or in front of the sphere per frame.
    t_idx = np.tile(np.arange(T), N)  # frame within its clip, for each of the N*T frames
    trans_draws = []
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
        trans_draws.append((tu, tv, np.repeat(size, T), col, active, front, square))
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

    def draw_transients(in_front: bool) -> None:
        for tu, tv, sz, col, active, front, square in trans_draws:
            # Only the frames where each is shown: a transient is on screen for a few frames.
            for is_square in (True, False):
                sel = np.flatnonzero(active & (front == in_front) & (square == is_square))
                if not sel.size:
                    continue
                if is_square:
                    _draw_square(canvas, frames[sel], tu[sel], tv[sel], sz[sel], col[sel], (H, W), full)
                else:
                    _draw_disc(canvas, frames[sel], tu[sel], tv[sel], sz[sel], col[sel], False, (H, W), full)

    draw_transients(in_front=False)
    _draw_disc(canvas, frames, u, v, r, per_frame, True, (H, W), full)
    draw_transients(in_front=True)

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

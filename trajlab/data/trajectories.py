"""Seeded 3D trajectories of four motion classes, with their exact equations.

Coordinates are the camera's (see :mod:`trajlab.data.camera`): x right, y up,
z depth along the viewing direction, in world units; time ``t`` is in seconds,
frame ``k`` is at ``t = k / fps``. A trajectory spans ``frames + horizon``
frames: the observed frames first, then the frames a model must forecast.

Ranges are stated per clip *duration* ``D = (frames + horizon - 1) / fps`` (the time
between the first and the last frame), so any fps or clip length shows the same
amount of motion. With the defaults (16 + 4 frames at 8 fps) ``D = 2.375 s``.

=========== ==============================================================================
class       parameters (ranges)
=========== ==============================================================================
linear      ``p(t) = start + v t``; path length ``|v| D`` in [1.5, 3.5] units; direction at
            50-90 degrees from the view axis (mostly across the view, some depth change).
circular    ``p(t) = c + r (cos(w t + phi) e1 + sin(w t + phi) e2)``; radius r in [0.8, 1.6];
            angle swept ``w D`` in [1.25, 2.5] * pi rad (w > 0); phase phi in [0, 2 pi);
            plane normal n (random unit vector, e1, e2 orthonormal to it) tilted 0-60 degrees
            from the view axis so the circle is never seen edge-on.
helical     a circle (radius in [0.6, 1.2], angle swept in [2, 4] * pi rad) around an axis n
            tilted 20-70 degrees from the view axis, plus a drift along n of [1.5, 3.0] units
            over the clip; ``pitch`` = drift per turn = 2 pi * axial speed / w.
parabolic   ``p(t) = start + v t + 1/2 g t^2`` with gravity g along -y; g such that the sag
            ``g D^2 / 8`` is in [0.8, 2.0] units; the apex falls at 30-70 % of the clip;
            horizontal travel in [1.5, 3.5] units at 0-50 degrees from the x axis.
=========== ==============================================================================

With ``range_scale`` s > 1 (``DatasetConfig.motion_range_scale``, the beyond-range stress
set) every size and speed above (path length, radius, angle swept, drift, sag, travel) is
drawn from ``[hi, s * hi]`` of its range instead: faster turns, larger radii, steeper arcs,
outside anything trained on. Directions, tilts and phases keep their ranges.

The centre (``start`` or ``center``) is then placed so that, at every frame, the
object stays at depth ``z`` in [4, 10] and its whole disc (plus a margin for camera
jitter) stays inside the image: the feasible interval of each coordinate is computed
in closed form and a point is drawn uniformly inside it (a rare infeasible shape is
redrawn). All numbers are rounded to :data:`DECIMALS` decimals *before* the positions
are computed, so the equation strings reproduce the positions to float64 precision.
The circle and helix are written per axis as ``c + A cos(w t + phase)``, with ``A`` and
``phase`` derived from ``r``, ``e1``, ``e2`` and then rounded; ``radius`` and ``normal``
in ``params`` describe the circle before that rounding (equal to 1e-4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajlab.data.camera import Camera, apparent_radius
from trajlab.profiles import CLASS_NAMES, DatasetConfig

DECIMALS = 4  # decimals kept in every parameter, so equations are short and exact
_TOL = 1e-3  # world units kept clear of the feasible interval's ends (covers rounding)
_MIN_EXTENT = 0.75  # world units: below this, "% of extent" metrics would blow up
_MAX_ATTEMPTS = 200  # shapes redrawn before giving up (about 1-2 needed on average)


def _r(x: float) -> float:
    """Round to DECIMALS and drop the sign of zero (so '-0.0' never appears)."""
    v = round(float(x), DECIMALS)
    return 0.0 if v == 0 else v


def _num(x: float) -> str:
    """Shortest repr of an already rounded number (``+ 0.0`` turns -0.0 into 0.0)."""
    return repr(float(x) + 0.0)


def _plus(coef: float, body: str) -> str:
    """`` + coef*body`` or `` - |coef|*body``; empty for a zero coefficient (already rounded)."""
    if coef == 0:
        return ""
    if coef < 0:
        return f" - {_num(-coef)}*{body}"
    return f" + {_num(coef)}*{body}"


def _cos_arg(w: float, phase: float) -> str:
    if phase == 0:
        return f"{_num(w)}*t"
    return f"{_num(w)}*t {'-' if phase < 0 else '+'} {_num(abs(phase))}"


def _unit_from_tilt(tilt: float, azimuth: float) -> np.ndarray:
    """Unit vector at ``tilt`` rad from +z with the given azimuth (rad) around z."""
    s = math.sin(tilt)
    return np.array([s * math.cos(azimuth), s * math.sin(azimuth), math.cos(tilt)])


def _basis(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthonormal to ``n`` (and to each other)."""
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = a - (a @ n) * n
    e1 /= math.sqrt(float(e1 @ e1))
    # Written out: np.cross costs ~50 us per call, more than the rest of a sample.
    e2 = np.array([n[1] * e1[2] - n[2] * e1[1], n[2] * e1[0] - n[0] * e1[2], n[0] * e1[1] - n[1] * e1[0]])
    return e1, e2


def _lerp(u: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(u)


def _wrap(a: float) -> float:
    """Angle to (-pi, pi]."""
    return math.pi - (math.pi - a) % (2 * math.pi)


@dataclass(frozen=True)
class Trajectory:
    """One sampled motion: class, parameters, equations and positions at every frame."""

    label: int  # index into CLASS_NAMES
    params: dict[str, Any]  # JSON-serialisable generating parameters (rounded values)
    equations: tuple[str, str, str]  # x(t), y(t), z(t): sympy-parsable, t in seconds
    times: np.ndarray = field(repr=False)  # float64 (frames + horizon,), seconds
    positions: np.ndarray = field(repr=False)  # float64 (frames + horizon, 3), world units

    @property
    def kind(self) -> str:
        return CLASS_NAMES[self.label]

    @property
    def extent(self) -> float:
        """Max over axes of (max - min) of the positions, world units."""
        return float(np.ptp(self.positions, axis=0).max())


class TrajectoryGenerator:
    """Draws trajectories of each class that stay in the camera's view.

    Deterministic given the ``numpy.random.Generator`` passed to :meth:`sample`.
    """

    def __init__(
        self,
        *,
        frames: int = 16,
        horizon: int = 4,
        fps: float = 8.0,
        camera: Camera | None = None,
        sphere_radius: float = 0.45,  # world units; the rendered object's radius
        depth_range: tuple[float, float] = (4.0, 10.0),  # world units along +z
        margin_px: float = 1.0,  # pixels kept free between the disc and the image border
        range_scale: float = 1.0,  # > 1: sizes and speeds drawn from [hi, range_scale * hi] (beyond)
    ) -> None:
        if range_scale < 1.0:
            raise ValueError(f"range_scale must be >= 1 (1 = the training ranges), got {range_scale}")
        self.frames = frames
        self.horizon = horizon
        self.fps = fps
        self.camera = camera or Camera(64, 64)
        self.sphere_radius = sphere_radius
        self.depth_range = depth_range
        self.margin_px = margin_px
        self.range_scale = range_scale
        n = frames + horizon
        self.times = np.arange(n, dtype=np.float64) / fps  # seconds
        self.duration = (n - 1) / fps  # seconds from first to last frame

    @classmethod
    def from_config(cls, config: DatasetConfig) -> TrajectoryGenerator:
        """The generator a dataset of ``config`` uses (jitter widens the margin)."""
        return cls(
            frames=config.frames,
            horizon=config.horizon,
            fps=config.fps,
            camera=Camera(config.width, config.height, config.fov_degrees),
            sphere_radius=config.sphere_radius,
            # 3 sigma of jitter (rounded up to whole pixels, as the renderer shifts) + 1 px.
            margin_px=1.0 + math.ceil(3.0 * config.camera_jitter),
            range_scale=config.motion_range_scale,
        )

    def _size(self, u: float, lo: float, hi: float) -> float:
        """A size or speed in [lo, hi] (the training range), or beyond it in [hi, range_scale * hi]."""
        if self.range_scale == 1.0:
            return _lerp(u, lo, hi)
        return _lerp(u, hi, hi * self.range_scale)

    # -- sampling --------------------------------------------------------------------

    def sample(self, label: int | str, rng: np.random.Generator) -> Trajectory:
        """Draw one trajectory of class ``label`` (index or name)."""
        idx = CLASS_NAMES.index(label) if isinstance(label, str) else int(label)
        if not 0 <= idx < len(CLASS_NAMES):
            raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1} or a class name, got {label!r}")
        shape_fn = (self._linear, self._circular, self._helical, self._parabolic)[idx]
        for _ in range(_MAX_ATTEMPTS):
            # One vector draw per attempt: cheaper than a dozen scalar draws.
            u = rng.random(12)
            params, coeffs = shape_fn(u)
            rel = self._evaluate(idx, np.zeros(3), coeffs)
            centre = self._place(rel, u[9:12])
            if centre is None:
                continue
            positions = rel + centre
            if float(np.ptp(positions, axis=0).max()) < _MIN_EXTENT:
                continue
            key = "center" if idx in (1, 2) else "start"
            params = {key: [float(c) for c in centre], **params}
            return Trajectory(
                label=idx,
                params=params,
                equations=self._equations(idx, centre, coeffs),
                times=self.times,
                positions=positions,
            )
        raise RuntimeError(
            f"could not fit a {CLASS_NAMES[idx]} trajectory in view after {_MAX_ATTEMPTS} attempts; "
            "the image is too small or the field of view too narrow for these ranges"
        )

    def _linear(self, u: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        length = self._size(u[0], 1.5, 3.5)
        d = _unit_from_tilt(math.radians(_lerp(u[1], 50.0, 90.0)), _lerp(u[2], 0, 2 * math.pi))
        if u[3] < 0.5:
            d[2] = -d[2]
        v = np.array([_r(x) for x in d * length / self.duration])
        return {"velocity": v.tolist(), "speed": _r(np.linalg.norm(v))}, {"v": v}

    def _circle(
        self, radius: float, sweep: float, phase0: float, n: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Per-axis amplitude and phase of ``radius * (cos(th) e1 + sin(th) e2)``, th = w t + phase0."""
        w = _r(sweep / self.duration)
        e1, e2 = _basis(n)
        amp = radius * np.hypot(e1, e2)
        # r e1k cos(th) + r e2k sin(th) = A_k cos(th - delta_k), delta_k = atan2(e2k, e1k).
        ph = np.array([_r(_wrap(phase0 - math.atan2(e2[k], e1[k]))) for k in range(3)])
        return w, np.array([_r(a) for a in amp]), ph

    def _circular(self, u: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        radius = self._size(u[0], 0.8, 1.6)
        sweep = self._size(u[1], 1.25, 2.5) * math.pi
        phase0 = _lerp(u[2], 0, 2 * math.pi)
        n = _unit_from_tilt(math.radians(_lerp(u[3], 0.0, 60.0)), _lerp(u[4], 0, 2 * math.pi))
        w, amp, ph = self._circle(radius, sweep, phase0, n)
        params = {
            "radius": _r(radius),
            "normal": [_r(x) for x in n],
            "omega": w,  # rad/s
            "phase": _r(phase0),  # rad
            "amplitude": amp.tolist(),
            "axis_phase": ph.tolist(),
        }
        return params, {"w": np.array(w), "amp": amp, "ph": ph}

    def _helical(self, u: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        radius = self._size(u[0], 0.6, 1.2)
        sweep = self._size(u[1], 2.0, 4.0) * math.pi
        phase0 = _lerp(u[2], 0, 2 * math.pi)
        axis = _unit_from_tilt(math.radians(_lerp(u[3], 20.0, 70.0)), _lerp(u[4], 0, 2 * math.pi))
        if u[5] < 0.5:
            axis = -axis  # drift towards or away from the camera
        axial_speed = self._size(u[6], 1.5, 3.0) / self.duration  # units/s
        w, amp, ph = self._circle(radius, sweep, phase0, axis)
        drift = np.array([_r(x) for x in axis * axial_speed])
        params = {
            "radius": _r(radius),
            "axis": [_r(x) for x in axis],
            "omega": w,
            "phase": _r(phase0),
            "axial_speed": _r(axial_speed),
            "pitch": _r(2 * math.pi * axial_speed / w),  # units per turn
            "amplitude": amp.tolist(),
            "axis_phase": ph.tolist(),
            "drift": drift.tolist(),
        }
        return params, {"w": np.array(w), "amp": amp, "ph": ph, "v": drift}

    def _parabolic(self, u: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        sag = self._size(u[0], 0.8, 2.0)
        half_g = _r(4.0 * sag / self.duration**2)  # g/2, units/s^2
        g = 2.0 * half_g
        t_apex = _lerp(u[1], 0.3, 0.7) * self.duration
        travel = self._size(u[2], 1.5, 3.5)
        psi = math.radians(_lerp(u[3], 0.0, 50.0)) * (1 if u[4] < 0.5 else -1)
        side = 1.0 if u[5] < 0.5 else -1.0
        v = np.array(
            [
                _r(side * travel * math.cos(psi) / self.duration),
                _r(g * t_apex),
                _r(travel * math.sin(psi) / self.duration),
            ]
        )
        params = {"velocity": v.tolist(), "gravity": _r(g), "gravity_direction": [0.0, -1.0, 0.0]}
        return params, {"v": v, "h": np.array(half_g)}

    # -- evaluation and placement -----------------------------------------------------

    def _evaluate(self, idx: int, centre: np.ndarray, k: dict[str, np.ndarray]) -> np.ndarray:
        """Positions (N, 3) in the same arithmetic as the equation strings."""
        t = self.times[:, None]
        if idx == 0:
            return centre + k["v"] * t
        if idx == 1:
            return centre + k["amp"] * np.cos(k["w"] * t + k["ph"])
        if idx == 2:
            return centre + k["v"] * t + k["amp"] * np.cos(k["w"] * t + k["ph"])
        out = centre + k["v"] * t
        out[:, 1] -= k["h"] * self.times**2
        return out

    def _place(self, rel: np.ndarray, u: np.ndarray) -> np.ndarray | None:
        """A centre (rounded) that keeps ``centre + rel`` in view at every frame, or None."""
        zmin, zmax = self.depth_range
        lo, hi = zmin - rel[:, 2].min() + _TOL, zmax - rel[:, 2].max() - _TOL
        if lo >= hi:
            return None
        cz = _r(_lerp(u[2], lo, hi))
        z = cz + rel[:, 2]
        cam = self.camera
        f = cam.focal_px
        r_px = apparent_radius(z, self.sphere_radius, cam)
        # |x| <= z (W/2 - r - margin) / f at every frame (and y with H): linear bounds on the centre.
        half = np.array([cam.width / 2.0, cam.height / 2.0]) - self.margin_px
        h = z[:, None] * (half[None, :] - r_px[:, None]) / f  # (N, 2)
        lo_xy = (-h - rel[:, :2]).max(axis=0) + _TOL
        hi_xy = (h - rel[:, :2]).min(axis=0) - _TOL
        if (lo_xy >= hi_xy).any():
            return None
        cx, cy = (lo_xy + (hi_xy - lo_xy) * u[:2]).tolist()
        return np.array([_r(cx), _r(cy), cz])

    def _equations(self, idx: int, centre: np.ndarray, k: dict[str, np.ndarray]) -> tuple[str, str, str]:
        c = centre.tolist()
        v = k["v"].tolist() if "v" in k else None
        amp = k["amp"].tolist() if "amp" in k else None
        ph = k["ph"].tolist() if "ph" in k else None
        eqs = []
        for a in range(3):
            s = _num(c[a])
            if v is not None:
                s += _plus(v[a], "t")
            if idx == 3 and a == 1:
                s += _plus(-float(k["h"]), "t**2")
            if amp is not None and ph is not None:
                s += _plus(amp[a], f"cos({_cos_arg(float(k['w']), ph[a])})")
            eqs.append(s)
        return eqs[0], eqs[1], eqs[2]


def evaluate_equations(equations: Sequence[str], times: np.ndarray) -> np.ndarray:
    """Evaluate (x, y, z) equation strings in ``t`` (seconds) with sympy: (len(times), 3) float64.

    sympy is imported here, not at module import, to keep dataset builds fast.
    """
    import sympy

    t = sympy.Symbol("t")
    out = np.empty((len(times), 3), dtype=np.float64)
    for a, eq in enumerate(equations):
        fn = sympy.lambdify(t, sympy.sympify(eq, locals={"t": t}), modules="numpy")
        out[:, a] = np.broadcast_to(fn(np.asarray(times, dtype=np.float64)), (len(times),))
    return out

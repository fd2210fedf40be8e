"""Least-squares fits of the four motion families to 3D points, and model choice.

Every family is linear in its coefficients once the angular speed ω is fixed, so
each one is a per-axis linear least-squares problem over a small basis (times are
centred on the window's middle, tc, for conditioning):

    linear      p(t) = c0 + c1 τ                     τ = t - tc
    parabolic   p(t) = c0 + c1 τ + c2 τ²
    circular    p(t) = c + A cos ωτ + B sin ωτ        (any plane: A, B are 3-vectors)
    helical     p(t) = c + v τ + A cos ωτ + B sin ωτ  (any axis)

For the two periodic families ω is found by variable projection: the residual
after the inner linear solve is scanned on a geometric grid of ω (batched QR),
and the best grid cell is zoomed into (batched again) with a final parabolic step. The chosen
circle or helix is then refitted with its exact shape (equal, perpendicular axes;
drift along the normal) by ``scipy.optimize.least_squares``.

The family is chosen by a BIC-like score, N·log(RSS/N) + K·log(N), with RSS
floored at a tiny fraction of the extent (so noise-free data does not reward
extra parameters with log(0)), minus a bonus for the class the video model
predicted: the prior settles near-ties (a short arc of a circle against a
parabola under noise) but cannot overrule a clearly better fit. A periodic fit is
not a candidate when its radius is implausible for the points: over 20x their extent
(a few points overfitted) or under 2 % of it (a tracker's jitter on a straight path).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from trajlab.errors import CallAbandoned

FAMILIES: tuple[str, ...] = ("linear", "circular", "helical", "parabolic")
_PERIODIC = ("circular", "helical")
_N_BASIS = {"linear": 2, "parabolic": 3, "circular": 3, "helical": 4}

RSS_FLOOR_REL = 1e-5  # RMS residual floor as a fraction of the extent (float32 data, rounding)
PRIOR_BONUS = 6.0  # score bonus of the predicted class ("strong evidence" on the BIC scale)
OMEGA_GRID = 96  # grid points of the ω scan
ZOOM_LEVELS = 4  # each shrinks the ω bracket 8x (to ~1e-5 of ω), then a parabola refines
MAX_RADIUS_OVER_EXTENT = 20.0  # periodic fits with a larger radius are not credible
# Periodic fits with a smaller radius are a line or parabola with jitter on it (a tracker's
# frame-to-frame error fits as a tight, fast helix), not a turn anyone would call one.
MIN_RADIUS_OVER_EXTENT = 0.02
MIN_TURN_FRACTION = 1 / 8  # slowest ω considered: 1/8 turn over the observed window


@dataclass(frozen=True)
class FamilyFit:
    """One family fitted to the points. Coefficients are in centred time τ = t - tc."""

    family: str
    coefs: np.ndarray  # (k, 3): rows follow the family's basis order
    omega: float  # rad/s; 0 for polynomial families
    tc: float  # centring time, seconds
    rss: float  # residual sum of squares, world units²
    score: float  # selection score (lower is better)

    def predict(self, times: np.ndarray) -> np.ndarray:
        """Positions (N, 3) at absolute ``times`` (seconds)."""
        return _basis(self.family, np.asarray(times, dtype=np.float64) - self.tc, self.omega) @ self.coefs


@dataclass(frozen=True)
class MotionFit:
    """The chosen family with its physical parameters (world units, seconds, radians)."""

    family: str
    fit: FamilyFit
    extent: float  # of the observed points, world units
    rms_residual: float  # world units
    scores: dict[str, float]  # selection score per family tried
    params: dict[str, object] = field(default_factory=dict)


def _basis(family: str, tau: np.ndarray, omega: float) -> np.ndarray:
    one = np.ones_like(tau)
    if family == "linear":
        return np.stack([one, tau], axis=-1)
    if family == "parabolic":
        return np.stack([one, tau, tau * tau], axis=-1)
    c, s = np.cos(omega * tau), np.sin(omega * tau)
    if family == "circular":
        return np.stack([one, c, s], axis=-1)
    return np.stack([one, tau, c, s], axis=-1)


def _solve(x: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, float]:
    coefs, *_ = np.linalg.lstsq(x, p, rcond=None)
    r = p - x @ coefs
    return coefs, float(np.sum(r * r))


def _rss_batch(family: str, tau: np.ndarray, p: np.ndarray, omegas: np.ndarray) -> np.ndarray:
    """RSS(ω) of the variable projection for many ω at once: |P|² - |Qᵀ P|² with X(ω) = Q R.

    ``p`` must be centred (the basis has a constant column, so this changes no RSS but
    keeps the subtraction from cancelling away the small residuals)."""
    wt = omegas[:, None] * tau[None, :]
    cols = [np.ones_like(wt), np.cos(wt), np.sin(wt)]
    if family == "helical":
        cols.insert(1, np.broadcast_to(tau, wt.shape))
    q, _r = np.linalg.qr(np.stack(cols, axis=-1))  # (G, n, k)
    proj = np.einsum("gnk,nd->gkd", q, p)
    return float(np.sum(p * p)) - np.sum(proj * proj, axis=(1, 2))


def _fit_periodic(family: str, tau: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(coefs, ω, rss) for a periodic family: a geometric ω grid, then zooming in.

    Each zoom evaluates 17 ω across the best cell and its neighbour (one batched QR),
    shrinking the bracket 8x; a parabola through the last three values gives ω. This
    is 5-10x cheaper than a scalar minimiser calling a least-squares solve per ω.
    """
    span = float(tau.max() - tau.min())
    dt = float(np.median(np.diff(np.sort(tau))))
    w_lo = 2 * math.pi * MIN_TURN_FRACTION / span
    w_hi = 0.95 * math.pi / dt  # Nyquist: faster turning cannot be told from slower
    pc = p - p.mean(axis=0)
    grid = np.geomspace(w_lo, max(w_hi, 1.01 * w_lo), OMEGA_GRID)
    rss = _rss_batch(family, tau, pc, grid)
    i = int(np.argmin(rss))
    lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    best_w, best_rss = float(grid[i]), float(rss[i])
    sub, r, j = grid, rss, i
    for _ in range(ZOOM_LEVELS):
        sub = np.linspace(lo, hi, 17)
        r = _rss_batch(family, tau, pc, sub)
        j = int(np.argmin(r))
        if r[j] <= best_rss:
            best_w, best_rss = float(sub[j]), float(r[j])
        lo, hi = float(sub[max(j - 1, 0)]), float(sub[min(j + 1, len(sub) - 1)])
    best_parab = best_w
    if 0 < j < len(sub) - 1:
        # Vertex of the parabola through the three values around the last minimum.
        y0, y1, y2 = float(r[j - 1]), float(r[j]), float(r[j + 1])
        den = y0 - 2 * y1 + y2
        if den > 0:
            best_parab = float(sub[j]) + 0.5 * float(sub[1] - sub[0]) * (y0 - y2) / den
    coefs, rss_fin = _solve(_basis(family, tau, best_parab), p)
    coefs_b, rss_b = _solve(_basis(family, tau, best_w), p)
    if rss_b < rss_fin:
        return coefs_b, best_w, rss_b
    return coefs, best_parab, rss_fin


def fit_family(family: str, times: np.ndarray, positions: np.ndarray, extent: float) -> FamilyFit:
    """Fit one family; the score is not yet adjusted by a prior."""
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(positions, dtype=np.float64)
    tc = float(0.5 * (t.min() + t.max()))
    tau = t - tc
    if family in _PERIODIC:
        coefs, omega, rss = _fit_periodic(family, tau, p)
        k = 3 * _N_BASIS[family] + 1
    else:
        # Solved in u = τ/s (|u| <= 1) so [1, τ, τ²] stays well conditioned for any time
        # scale (hours-long windows, microsecond steps); c_k(τ) = c_k(u) / s^k.
        s = float(np.max(np.abs(tau))) or 1.0
        coefs, rss = _solve(_basis(family, tau / s, 0.0), p)
        coefs = coefs / (s ** np.arange(coefs.shape[0]))[:, None]
        omega = 0.0
        k = 3 * _N_BASIS[family]
    n_obs = p.size
    floor = (RSS_FLOOR_REL * max(extent, 1e-12)) ** 2 * n_obs
    score = n_obs * math.log(max(rss, floor) / n_obs) + k * math.log(n_obs)
    return FamilyFit(family, coefs, omega, tc, rss, score)


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise CallAbandoned("Describe: the call was cancelled or its deadline passed; the fit was stopped")


def fit_motion(
    times: np.ndarray,
    positions: np.ndarray,
    predicted: str | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> MotionFit:
    """Fit every family the point count supports and choose one.

    ``times`` (n,) seconds, strictly increasing; ``positions`` (n, 3) world units,
    n >= 3; ``predicted`` is the video model's class (a prior), or None.
    ``should_stop`` is asked between the stages (each family, the refinement):
    True raises :class:`trajlab.errors.CallAbandoned` (the caller left, stop working).
    """
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(positions, dtype=np.float64)
    n = t.shape[0]
    extent = float(np.max(p.max(axis=0) - p.min(axis=0)))
    fits: dict[str, FamilyFit] = {}
    for fam in FAMILIES:
        _check(should_stop)
        # A family needs more points than coefficients per axis (+1 to pin ω down).
        if n <= _N_BASIS[fam] + (1 if fam in _PERIODIC else 0):
            continue
        ff = fit_family(fam, t, p, extent)
        if fam in _PERIODIC:
            a, b = ff.coefs[-2], ff.coefs[-1]
            radius = math.sqrt((a @ a + b @ b) / 2)
            if radius > MAX_RADIUS_OVER_EXTENT * max(extent, 1e-12):
                # A "circle" far larger than the points it passes is a few points overfitted
                # (or a line/parabola in disguise), not circular motion.
                continue
            if radius < MIN_RADIUS_OVER_EXTENT * extent:
                continue
        fits[fam] = ff
    scores = {f: ff.score - (PRIOR_BONUS if f == predicted else 0.0) for f, ff in fits.items()}
    best = min(scores, key=lambda f: (scores[f], FAMILIES.index(f)))
    chosen = fits[best]
    if best in _PERIODIC:
        _check(should_stop)
        chosen = refine_periodic(chosen, t, p)
    rms = math.sqrt(chosen.rss / n)
    return MotionFit(best, chosen, extent, rms, scores, physical_params(chosen))


def _frame(normal: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal (e1, e2, n) with e1 along ``first`` projected into the plane of ``normal``."""
    n = normal / np.linalg.norm(normal)
    e1 = first - (first @ n) * n
    if np.linalg.norm(e1) < 1e-12:
        e1 = np.cross(n, [1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.cross(n, [0.0, 1.0, 0.0])
    e1 = e1 / np.linalg.norm(e1)
    return e1, np.cross(n, e1), n


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues); cheaper than scipy's Rotation per call."""
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-15:
        return np.eye(3)
    k = rotvec / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(theta) * kx + (1 - math.cos(theta)) * (kx @ kx)


def refine_periodic(fit: FamilyFit, times: np.ndarray, positions: np.ndarray) -> FamilyFit:
    """Refit a circle or helix with its true shape: ``scipy.optimize.least_squares``.

    The linear fit above lets A and B be any two vectors (an ellipse) and the drift
    any direction. The physical model has |A| = |B| = r, A ⟂ B, drift along the
    normal: centre (3) + tilt of the plane (2, rotations about the initial in-plane
    axes, so there is no gauge freedom) + r, ω, phase (+ axial speed). Fewer free
    parameters make noisy radius, ω and axis estimates tighter; noise-free data is
    already at the optimum and stays there.
    """
    tau = np.asarray(times, dtype=np.float64) - fit.tc
    p = np.asarray(positions, dtype=np.float64)
    c = fit.coefs
    helical = fit.family == "helical"
    centre0, drift0, a0, b0 = (c[0], c[1], c[2], c[3]) if helical else (c[0], np.zeros(3), c[1], c[2])
    normal0 = np.cross(a0, b0)
    if np.linalg.norm(normal0) < 1e-12 * max(1.0, float(a0 @ a0)):
        return fit  # degenerate (a line): nothing to refine
    e1, e2, n0 = _frame(normal0, a0)
    r0 = math.sqrt((a0 @ a0 + b0 @ b0) / 2)
    x0 = np.array([*centre0, 0.0, 0.0, r0, fit.omega, 0.0, float(drift0 @ n0) if helical else 0.0])

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rot = _rotation(x[3] * e1 + x[4] * e2)
        u, v, n = rot @ e1, rot @ e2, rot @ n0
        return u, v, n, x[0:3]

    def residual(x: np.ndarray) -> np.ndarray:
        u, v, n, centre = model(x)
        ang = x[6] * tau + x[7]
        pred = centre + x[5] * (np.outer(np.cos(ang), u) + np.outer(np.sin(ang), v))
        if helical:
            pred = pred + np.outer(tau, x[8] * n)
        return (pred - p).ravel()

    if not helical:
        x0 = x0[:8]
    sol = least_squares(residual, x0, method="lm", xtol=1e-12, ftol=1e-12, max_nfev=400)
    x = sol.x
    rss = float(np.sum(sol.fun**2))
    if not np.all(np.isfinite(x)) or x[6] <= 0 or x[5] <= 0 or rss > fit.rss * 4 + 1e-18:
        return fit  # the constrained fit went astray: keep the linear one
    u, v, n, centre = model(x)
    # Back to the shared layout: p = c (+ drift τ) + A cos ωτ + B sin ωτ.
    a_vec = x[5] * (math.cos(x[7]) * u + math.sin(x[7]) * v)
    b_vec = x[5] * (-math.sin(x[7]) * u + math.cos(x[7]) * v)
    rows = [centre, x[8] * n, a_vec, b_vec] if helical else [centre, a_vec, b_vec]
    return FamilyFit(fit.family, np.array(rows), float(x[6]), fit.tc, rss, fit.score)


def physical_params(fit: FamilyFit) -> dict[str, object]:
    """Physical parameters of a fit, in absolute time t (seconds) and world units."""
    c = fit.coefs
    tc = fit.tc
    if fit.family == "linear":
        v = c[1]
        return {"position_at_t0": c[0] - v * tc, "velocity": v, "speed": float(np.linalg.norm(v))}
    if fit.family == "parabolic":
        # p = c0 + c1 τ + c2 τ²  ->  acceleration 2 c2; velocity at t = 0 is c1 - 2 c2 tc.
        a = 2 * c[2]
        v0 = c[1] - a * tc
        p0 = c[0] - c[1] * tc + c[2] * tc * tc
        return {
            "position_at_t0": p0,
            "velocity_at_t0": v0,
            "acceleration": a,
            "speed_at_t0": float(np.linalg.norm(v0)),
            "acceleration_magnitude": float(np.linalg.norm(a)),
        }
    if fit.family == "circular":
        centre, a_vec, b_vec = c[0], c[1], c[2]
        drift = np.zeros(3)
    else:
        centre, drift, a_vec, b_vec = c[0] - c[1] * tc, c[1], c[2], c[3]
    radius = float(math.sqrt((a_vec @ a_vec + b_vec @ b_vec) / 2))
    normal = np.cross(a_vec, b_vec)
    nn = float(np.linalg.norm(normal))
    normal = normal / nn if nn > 0 else np.array([0.0, 0.0, 1.0])
    omega = fit.omega
    out: dict[str, object] = {
        "radius": radius,
        "angular_speed": omega,
        "period": 2 * math.pi / omega if omega > 0 else math.inf,
        "normal": normal,  # rotation is counter-clockwise seen from the tip of this vector
        "speed": radius * omega,
    }
    if fit.family == "circular":
        out["centre"] = centre
    else:
        axial = float(drift @ normal)
        axis = normal if axial >= 0 else -normal
        out.update(
            {
                "axis": axis,
                "axial_speed": abs(axial),
                "pitch": abs(axial) * 2 * math.pi / omega,
                "axis_point_at_t0": centre,
                "axis_velocity": drift,
                "speed": math.hypot(radius * omega, axial),
            }
        )
    return out

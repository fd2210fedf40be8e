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
and the best grid cell is refined with scipy's bounded Brent search. The chosen
circle or helix is then refitted with its exact shape (equal, perpendicular axes;
drift along the normal) by ``scipy.optimize.least_squares``.

The family is chosen by a BIC-like score, N·log(RSS/N) + K·log(N), with RSS
floored at a tiny fraction of the extent (so noise-free data does not reward
extra parameters with log(0)), minus a bonus for the class the video model
predicted: the prior settles near-ties (a short arc of a circle against a
parabola under noise) but cannot overrule a clearly better fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares, minimize_scalar

FAMILIES: tuple[str, ...] = ("linear", "circular", "helical", "parabolic")
_PERIODIC = ("circular", "helical")
_N_BASIS = {"linear": 2, "parabolic": 3, "circular": 3, "helical": 4}

RSS_FLOOR_REL = 1e-5  # RMS residual floor as a fraction of the extent (float32 data, rounding)
PRIOR_BONUS = 6.0  # score bonus of the predicted class ("strong evidence" on the BIC scale)
OMEGA_GRID = 96  # grid points of the ω scan
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


def _fit_periodic(family: str, tau: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(coefs, ω, rss) for a periodic family by grid scan + least_squares refinement."""
    span = float(tau.max() - tau.min())
    dt = float(np.median(np.diff(np.sort(tau))))
    w_lo = 2 * math.pi * MIN_TURN_FRACTION / span
    w_hi = 0.95 * math.pi / dt  # Nyquist: faster turning cannot be told from slower
    grid = np.geomspace(w_lo, max(w_hi, 1.01 * w_lo), OMEGA_GRID)
    # Batched variable projection: RSS(ω) = |P|² - |Qᵀ P|² with X(ω) = Q R.
    wt = grid[:, None] * tau[None, :]
    one = np.ones_like(wt)
    cols = [one, np.cos(wt), np.sin(wt)]
    if family == "helical":
        cols.insert(1, np.broadcast_to(tau, wt.shape))
    xb = np.stack(cols, axis=-1)  # (G, n, k)
    q, _r = np.linalg.qr(xb)
    proj = np.einsum("gnk,nd->gkd", q, p)
    rss_grid = float(np.sum(p * p)) - np.sum(proj * proj, axis=(1, 2))
    i = int(np.argmin(rss_grid))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]

    def rss_at(w: float) -> float:
        return _solve(_basis(family, tau, w), p)[1]

    # Refine inside the best grid cell: Brent's bounded search on the projected RSS
    # (each evaluation is itself a linear least-squares solve). It needs ~10-15
    # solves, 3-4x fewer than a general least-squares driver on one parameter.
    res = minimize_scalar(
        rss_at,
        bounds=(float(lo), float(hi)),
        method="bounded",
        options={"xatol": 1e-10 * float(hi), "maxiter": 60},
    )
    omega = float(res.x) if res.fun <= rss_grid[i] else float(grid[i])
    coefs, rss = _solve(_basis(family, tau, omega), p)
    return coefs, omega, rss


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
        coefs, rss = _solve(_basis(family, tau, 0.0), p)
        omega = 0.0
        k = 3 * _N_BASIS[family]
    n_obs = p.size
    floor = (RSS_FLOOR_REL * max(extent, 1e-12)) ** 2 * n_obs
    score = n_obs * math.log(max(rss, floor) / n_obs) + k * math.log(n_obs)
    return FamilyFit(family, coefs, omega, tc, rss, score)


def fit_motion(times: np.ndarray, positions: np.ndarray, predicted: str | None = None) -> MotionFit:
    """Fit every family the point count supports and choose one.

    ``times`` (n,) seconds, strictly increasing; ``positions`` (n, 3) world units,
    n >= 3; ``predicted`` is the video model's class (a prior), or None.
    """
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(positions, dtype=np.float64)
    n = t.shape[0]
    extent = float(np.max(p.max(axis=0) - p.min(axis=0)))
    fits: dict[str, FamilyFit] = {}
    for fam in FAMILIES:
        # A family needs more points than coefficients per axis (+1 to pin ω down).
        if n <= _N_BASIS[fam] + (1 if fam in _PERIODIC else 0):
            continue
        fits[fam] = fit_family(fam, t, p, extent)
    scores = {f: ff.score - (PRIOR_BONUS if f == predicted else 0.0) for f, ff in fits.items()}
    best = min(scores, key=lambda f: (scores[f], FAMILIES.index(f)))
    chosen = fits[best]
    if best in _PERIODIC:
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


def refine_periodic(fit: FamilyFit, times: np.ndarray, positions: np.ndarray) -> FamilyFit:
    """Refit a circle or helix with its true shape: ``scipy.optimize.least_squares``.

    The linear fit above lets A and B be any two vectors (an ellipse) and the drift
    any direction. The physical model has |A| = |B| = r, A ⟂ B, drift along the
    normal: centre (3) + tilt of the plane (2, rotations about the initial in-plane
    axes, so there is no gauge freedom) + r, ω, phase (+ axial speed). Fewer free
    parameters make noisy radius, ω and axis estimates tighter; noise-free data is
    already at the optimum and stays there.
    """
    from scipy.spatial.transform import Rotation

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
        rot = Rotation.from_rotvec(x[3] * e1 + x[4] * e2).as_matrix()
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

"""Physics baselines that see the TRUE observed 3D positions, to score the learned forecasts against.

Each forecaster maps observed positions (N, T, 3) to the next ``horizon`` positions
(N, horizon, 3), extrapolating from the last few frames with finite differences.
Each is exact on noise-free motion of its own kind:

- constant velocity: straight lines at constant speed (linear);
- constant acceleration: parabolas (any motion whose position is quadratic in time);
- constant turn rate: the velocity vector turns by a constant angle per frame about a
  fixed axis, with its axial part constant: circles and helices in any orientation.

A learned model sees only pixels, so losing to these is expected on noise-free
data for the class a baseline was built for; the evaluation reports by how much.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Forecaster = Callable[[np.ndarray, int], np.ndarray]


def _check(observed: np.ndarray, need: int) -> np.ndarray:
    obs = np.asarray(observed, dtype=np.float64)
    if obs.ndim != 3 or obs.shape[2] != 3:
        raise ValueError(f"observed must be (N, T, 3), got {obs.shape}")
    if obs.shape[1] < need:
        raise ValueError(f"need at least {need} observed frames, got {obs.shape[1]}")
    return obs


def constant_velocity(observed: np.ndarray, horizon: int) -> np.ndarray:
    """p[T-1+k] = p[T-1] + k * (p[T-1] - p[T-2])."""
    obs = _check(observed, 2)
    v = obs[:, -1] - obs[:, -2]
    k = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    return obs[:, -1][:, None] + k * v[:, None]


def constant_acceleration(observed: np.ndarray, horizon: int) -> np.ndarray:
    """Second difference held constant: exact for positions quadratic in time."""
    obs = _check(observed, 3)
    v = obs[:, -1] - obs[:, -2]
    a = obs[:, -1] - 2 * obs[:, -2] + obs[:, -3]
    k = np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    # Sum of velocities v + j*a for j = 1..k: k*v + a*k(k+1)/2.
    return obs[:, -1][:, None] + k * v[:, None] + (k * (k + 1) / 2) * a[:, None]


def _rotate(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    # Rodrigues' rotation of vectors v (N, 3) about unit axes (N, 3) by angles (N,).
    c = np.cos(angle)[:, None]
    s = np.sin(angle)[:, None]
    dot = np.sum(axis * v, axis=1, keepdims=True)
    return v * c + np.cross(axis, v) * s + axis * dot * (1 - c)


def constant_turn_rate(observed: np.ndarray, horizon: int, *, eps: float = 1e-9) -> np.ndarray:
    """The last velocity keeps turning at the last turn rate about the last turn axis.

    With frame displacements v1, v2, v3 (the last four positions), a constant turn
    is a rotation R with v2 = R v1 and v3 = R v2; the axis is normal to both
    velocity changes (v2 - v1, v3 - v2), the angle is that between the components
    of v2 and v3 perpendicular to the axis. Where the velocity does not turn
    (straight or planar-accelerated motion) this degenerates to constant velocity.
    """
    obs = _check(observed, 4)
    v1 = obs[:, -3] - obs[:, -4]
    v2 = obs[:, -2] - obs[:, -3]
    v3 = obs[:, -1] - obs[:, -2]
    d1, d2 = v2 - v1, v3 - v2
    axis = np.cross(d1, d2)
    norm = np.linalg.norm(axis, axis=1)
    n1, n2 = np.linalg.norm(d1, axis=1), np.linalg.norm(d2, axis=1)
    speed = np.linalg.norm(v3, axis=1)
    # Turning = the velocity changes are non-negligible and not parallel (sin > 1e-6);
    # parallel changes are straight-line acceleration, which a turn cannot model.
    turning = (np.minimum(n1, n2) > 1e-9 * np.maximum(speed, eps)) & (norm > 1e-6 * n1 * n2)
    axis = np.where(turning[:, None], axis / np.maximum(norm, eps)[:, None], 0.0)
    p2 = v2 - np.sum(v2 * axis, axis=1, keepdims=True) * axis
    p3 = v3 - np.sum(v3 * axis, axis=1, keepdims=True) * axis
    cos = np.sum(p2 * p3, axis=1)
    sin = np.sum(np.cross(p2, p3) * axis, axis=1)
    angle = np.where(turning, np.arctan2(sin, cos), 0.0)
    out = np.empty((obs.shape[0], horizon, 3))
    pos = obs[:, -1].copy()
    vel = v3.copy()
    for k in range(horizon):
        vel = np.where(turning[:, None], _rotate(vel, axis, angle), vel)
        pos = pos + vel
        out[:, k] = pos
    return out


FORECASTERS: dict[str, Forecaster] = {
    "constant_velocity": constant_velocity,
    "constant_acceleration": constant_acceleration,
    "constant_turn_rate": constant_turn_rate,
}


def best_of(observed: np.ndarray, future: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oracle: per sample, the forecaster with the lowest average displacement error.

    Returns (forecast (N, horizon, 3), index into FORECASTERS per sample). It looks
    at the true future to choose, so it is a bound, not a predictor.
    """
    horizon = future.shape[1]
    preds = np.stack([f(observed, horizon) for f in FORECASTERS.values()])  # (B, N, h, 3)
    ade = np.linalg.norm(preds - future[None], axis=-1).mean(axis=-1)  # (B, N)
    choice = ade.argmin(axis=0)
    return preds[choice, np.arange(future.shape[0])], choice

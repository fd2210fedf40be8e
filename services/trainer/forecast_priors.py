"""Forecast priors read off the observed track (registered in FORECAST_PRIORS).

A prior maps the track (N, T, 3) and the class probabilities (N, K) to a forecast
(N, horizon, 3) in world units; the forecast head adds its correction to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from services.trainer.registry import FORECAST_PRIORS
from trajlab.profiles import CLASS_NAMES


def linear_extrapolation(frames: int, horizon: int, window: int = 4) -> torch.Tensor:
    """(horizon, frames) matrix: least-squares line through the last ``window`` frames, evaluated at T..T+h-1.

    Constant velocity estimated from the latest frames (a straight line through a few
    points, so one noisy point moves it less than the last step would). Frame units.
    """
    window = max(2, min(window, frames))
    k = torch.arange(frames + horizon, dtype=torch.float64)
    v = torch.stack([torch.ones_like(k), k], dim=1)  # (T + h, 2)
    out = torch.zeros(horizon, frames, dtype=torch.float64)
    out[:, frames - window :] = v[frames:] @ torch.linalg.pinv(v[frames - window : frames])
    return out.float()


class ClassGatedExtrapolation(nn.Module):
    """Per-class linear forecasters of the track, mixed by the predicted class probabilities.

    Each motion class ``k`` has its own affine map from the track's offsets to the last
    point, ``w_t - w_T`` for all T frames and 3 axes, to the next frames' offsets:
    ``prior_k = w_T + A_k vec(w - w_T) + b_k``, the classic linear predictor of a time
    series, one per kind of motion (a line for linear motion, a parabola with its gravity
    in the bias, a fixed-frequency recurrence for circles). The prior is
    ``sum_k p_k prior_k`` with ``p`` the classifier's probabilities (detached: the
    classifier learns from its own loss only), and the forecast head adds its correction.
    Every ``A_k`` starts as constant velocity through the last ``window`` points
    (:func:`linear_extrapolation`), so an untrained model forecasts like the old prior.

    Why: one ridge regression per class from the track to the future, mixed by the model's own
    probabilities, forecast far better than the heads reading the pooled features with a
    constant-velocity prior (bench/RESULTS.md): the direct linear path from the track to the
    forecast was missing.
    """

    def __init__(self, *, frames: int, horizon: int, num_classes: int, window: int = 4) -> None:
        super().__init__()
        cv = torch.kron(linear_extrapolation(frames, horizon, window), torch.eye(3))  # (3h, 3T)
        self.horizon = horizon
        self.weight = nn.Parameter(cv.expand(num_classes, -1, -1).clone())  # (K, 3h, 3T)
        self.bias = nn.Parameter(torch.zeros(num_classes, 3 * horizon))  # (K, 3h)

    def forward(self, world: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units, class probabilities (N, K) -> (N, horizon, 3) world units."""
        n = world.shape[0]
        last = world[:, -1:]  # (N, 1, 3)
        offsets = (world - last).reshape(n, -1)  # (N, 3T)
        per_class = torch.einsum("ni,koi->nko", offsets, self.weight) + self.bias  # (N, K, 3h)
        mixed = torch.einsum("nk,nko->no", probs, per_class)  # (N, 3h)
        return mixed.reshape(n, self.horizon, 3) + last


# The angular rate each motion class's path has to be searched for (ParametricExtrapolation).
_PERIODIC = {"linear": False, "parabolic": False, "circular": True, "helical": True}


def _family_basis(name: str, t: torch.Tensor, w: float = 0.0) -> torch.Tensor:
    """(len(t), p) basis of ``name``'s path per axis at times ``t`` (frames), angular rate ``w`` rad/frame."""
    one = torch.ones_like(t)
    if name == "linear":
        cols = [one, t]
    elif name == "parabolic":
        cols = [one, t, t * t]
    elif name == "circular":
        cols = [one, torch.cos(w * t), torch.sin(w * t)]
    else:  # helical
        cols = [one, t, torch.cos(w * t), torch.sin(w * t)]
    return torch.stack(cols, dim=1)


class ParametricExtrapolation(nn.Module):
    """Per-class least-squares fits of the class's own kind of path to the track, extrapolated.

    Each motion class is a family of paths linear in a few coefficients per axis: a line
    (``a + b t``), a parabola (``a + b t + c t^2``), a circle (``a + b cos wt + c sin wt``)
    and a helix (the circle plus ``d t``), the last two for an angular rate ``w`` searched
    on a log-spaced grid of ``grid`` rates, given as the angle swept from the clip's first
    frame to its last forecast one (``sweep_range``, radians; the generator's circles sweep
    1.25-2.5 pi and its helices 2-4 pi, for any fps: trajlab.data.trajectories). For a
    fixed basis, the fit to the T observed points and its value at the next ``horizon``
    frames are fixed linear maps of the track (``B_obs pinv(B_obs)`` and
    ``B_next pinv(B_obs)``), precomputed here. The forward pass scores every candidate by
    its residual, weighs the candidates of each class by a softmin of the residual
    relative to the class's best (``sharpness``; smooth, so PyTorch and ONNX Runtime
    agree, and as sharp as an argmin on a clean track), and mixes the classes'
    extrapolations by the class probabilities. No parameters.

    Why: the track is noisy (mostly in depth, frame to frame), and a fit of the right family
    over all the frames averages that noise where the per-class affine maps
    (:class:`ClassGatedExtrapolation`) cannot express a circle of unknown rate
    (bench/RESULTS.md).

    Robust re-fits (``refits``): some frames of a track are far off (a sphere behind a
    distractor, a mask that leaks onto one: 2 % of seed b1's frames are > 10 % off in depth),
    and least squares lets each pull the whole fit. Each re-fit is one step of Huber's
    M-estimator in its pseudo-observation form: every point's residual to the current fit is
    clipped to the fit's rms residual (per candidate), the clipped points are fitted again
    with the same fixed maps, so the step stays a few tensor products (exported as they are).
    Three re-fits is where the gain stopped (bench/RESULTS.md).
    ::

        track (N, T, 3) -> offsets from the last point
          -> residual of every candidate fit (N, G, T, 3) [-> clip at rms, re-fit] x refits
          -> squared residual (N, G); softmin within each class (N, K, G)
          -> extrapolations (N, K, horizon, 3) -> mixed by p (N, K)    prior (N, horizon, 3)
    """

    def __init__(
        self,
        *,
        frames: int,
        horizon: int,
        classes: Sequence[str] = CLASS_NAMES,
        sweep_range: tuple[float, float] = (0.5 * math.pi, 6.0 * math.pi),
        grid: int = 320,
        sharpness: float = 50.0,
        refits: int = 0,
    ) -> None:
        super().__init__()
        if refits < 0:
            raise ValueError(f"parametric forecast prior: refits must be >= 0, got {refits}")
        unknown = [c for c in classes if c not in _PERIODIC]
        if unknown:
            raise ValueError(f"parametric forecast prior: no family for classes {unknown}")
        lo, hi = sweep_range
        if not 0 < lo < hi:
            raise ValueError(f"parametric forecast prior: sweep_range must be 0 < lo < hi, got {sweep_range}")
        t = torch.arange(frames + horizon, dtype=torch.float64) - (frames - 1)  # 0 at the last observed frame
        span = frames + horizon - 1  # frames from the first to the last of the clip
        omegas = torch.exp(torch.linspace(math.log(lo), math.log(hi), grid, dtype=torch.float64)) / span
        residual, extrapolate, owner = [], [], []
        for k, name in enumerate(classes):
            for w in omegas.tolist() if _PERIODIC[name] else [0.0]:
                basis = _family_basis(name, t, w)
                pinv = torch.linalg.pinv(basis[:frames])  # (p, T)
                residual.append(torch.eye(frames, dtype=torch.float64) - basis[:frames] @ pinv)
                extrapolate.append(basis[frames:] @ pinv)
                owner.append(k)
        owner_t = torch.tensor(owner)
        self.horizon = horizon
        self.sharpness = float(sharpness)
        self.refits = int(refits)
        self.register_buffer("residual", torch.stack(residual).float(), persistent=False)  # (G, T, T)
        self.register_buffer("extrapolate", torch.stack(extrapolate).float(), persistent=False)  # (G, h, T)
        member = owner_t[None, :] == torch.arange(len(classes))[:, None]  # (K, G)
        self.register_buffer("member", member, persistent=False)

    def per_class(self, world: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units -> each class's best-fit extrapolation (N, K, horizon, 3)."""
        last = world[:, -1:]  # (N, 1, 3)
        offsets = world - last
        points = offsets[:, None]  # (N, 1, T, 3): what each candidate fits, the same track at first
        resid = torch.einsum("gst,nta->ngsa", self.residual, offsets)  # (N, G, T, 3): points - fit
        for _ in range(self.refits):
            dist = resid.square().sum(dim=3, keepdim=True)  # (N, G, T, 1) squared distance to the fit
            rms = dist.mean(dim=2, keepdim=True)
            # Huber's pseudo-observations: fit + residual clipped to the rms (kept within it).
            keep = torch.clamp(((rms + 1e-12) / (dist + 1e-12)).sqrt(), max=1.0)
            points = points - resid * (1.0 - keep)
            resid = torch.einsum("gst,ngta->ngsa", self.residual, points)
        res = resid.square().sum(dim=(2, 3))  # (N, G)
        # Relative to each class's best fit: scale-free, and a clean track (best ~0) picks its best.
        big = torch.finfo(res.dtype).max
        best = torch.where(self.member[None], res[:, None], big).amin(dim=2, keepdim=True)  # (N, K, 1)
        score = -self.sharpness * res[:, None] / (best + 1e-9)
        weights = torch.softmax(torch.where(self.member[None], score, -big), dim=2)  # (N, K, G)
        if self.refits:
            fits = torch.einsum("ght,ngta->ngha", self.extrapolate, points)  # (N, G, h, 3)
        else:
            fits = torch.einsum("ght,nta->ngha", self.extrapolate, offsets)
        return torch.einsum("nkg,ngha->nkha", weights, fits) + last[:, None]

    def forward(self, world: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units, class probabilities (N, K) -> (N, horizon, 3) world units."""
        return torch.einsum("nk,nkha->nha", probs, self.per_class(world))



@FORECAST_PRIORS.register("affine", source="trajlab seed")
def create_affine_prior(*, frames: int, horizon: int, num_classes: int) -> ClassGatedExtrapolation:
    """One learned affine map per class, mixed by the class probabilities.
    ::

        track (N, T, 3), probabilities (N, K) -> prior (N, horizon, 3) world units
    """
    return ClassGatedExtrapolation(frames=frames, horizon=horizon, num_classes=num_classes)


@FORECAST_PRIORS.register("parametric", source="trajlab seed")
def create_parametric_prior(
    *, frames: int, horizon: int, num_classes: int, prior_refits: int = 0
) -> ParametricExtrapolation:
    """Each class's kind of path fitted to the track and extrapolated, mixed by the probabilities.
    ::

        track (N, T, 3), probabilities (N, K) -> prior (N, horizon, 3) world units
    """
    return ParametricExtrapolation(
        frames=frames, horizon=horizon, classes=CLASS_NAMES[:num_classes], refits=prior_refits
    )

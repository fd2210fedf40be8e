"""A track's shape as features: offsets from its last point, steps and changes of steps, and
(optionally) how far it spreads in its three principal directions."""

from __future__ import annotations

import math

import torch
from torch import nn

# The spreads' width: principal_spreads (2) of the track and of the track smoothed over SMOOTHING frames.
SPREADS = 4
# A moving average over 5 frames takes most of a read track's per-frame depth jitter off a
# circle's third spread while a helix's steady drift stays (bench/RESULTS.md).
SMOOTHING = 5


def motion_features_dim(frames: int, spreads: bool = False) -> int:
    """Width of :func:`motion_features` for ``frames`` points: T offsets, T - 1 steps, T - 2 changes
    (and the principal spreads)."""
    return 3 * (frames + (frames - 1) + (frames - 2)) + (SPREADS if spreads else 0)


def motion_features(
    world: torch.Tensor, offset_scale: torch.Tensor, step_scale: torch.Tensor, spreads: bool = False
) -> torch.Tensor:
    """(N, T, 3) world track -> (N, 3 (3T - 3) [+ 4]): offsets from the last point, steps, step
    changes [, :func:`principal_spreads` of the track and of its :func:`moving_average`].

    Translation-invariant: the shape of the path, not where it is. ``offset_scale`` and
    ``step_scale`` (3,) are the spreads of offsets and steps on the training split.
    """
    n = world.shape[0]
    offsets = (world - world[:, -1:]) / offset_scale
    steps = (world[:, 1:] - world[:, :-1]) / step_scale
    changes = steps[:, 1:] - steps[:, :-1]
    parts = [offsets.reshape(n, -1), steps.reshape(n, -1), changes.reshape(n, -1)]
    if spreads:
        parts += [principal_spreads(world), principal_spreads(moving_average(world, SMOOTHING))]
    return torch.cat(parts, dim=1)


def motion_scales(observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The training split's observed positions (N, T, 3) -> (offset_scale, step_scale), each (3,):
    the spreads of offsets from the last point and of steps that :func:`motion_features` divides by."""
    offsets = (observed - observed[:, -1:]).reshape(-1, 3).std(0).clamp_min(1e-6)
    steps = (observed[:, 1:] - observed[:, :-1]).reshape(-1, 3).std(0).clamp_min(1e-6)
    return offsets, steps


class TrackShape(nn.Module):
    """:func:`motion_features` with the training split's scales (buffers, saved with the weights):
    what the track readout's summary and a track classifier read of a track (the perception's, or
    without it the position head's)."""

    def __init__(self, frames: int, spreads: bool = False) -> None:
        super().__init__()
        self.spreads = bool(spreads)
        self.dim = motion_features_dim(frames, self.spreads)
        self.register_buffer("offset_scale", torch.ones(3))
        self.register_buffer("step_scale", torch.ones(3))

    def set_stats(self, observed: torch.Tensor) -> None:
        offsets, steps = motion_scales(observed.to(self.offset_scale.dtype))
        self.offset_scale.copy_(offsets)
        self.step_scale.copy_(steps)

    def forward(self, world: torch.Tensor) -> torch.Tensor:
        return motion_features(world, self.offset_scale, self.step_scale, self.spreads)


def moving_average(world: torch.Tensor, window: int) -> torch.Tensor:
    """(N, T, 3) -> (N, T, 3): each point the mean of the ``window`` (odd) around it, the ends repeated."""
    half = window // 2
    padded = torch.cat([world[:, :1].expand(-1, half, -1), world, world[:, -1:].expand(-1, half, -1)], dim=1)
    frames = world.shape[1]
    return sum(padded[:, k : k + frames] for k in range(window)) / window


def principal_spreads(world: torch.Tensor) -> torch.Tensor:
    """(N, T, 3) track -> (N, 2): its spread along the second and the third principal direction,
    each over the spread along the first (square roots of the covariance's eigenvalue ratios).

    What tells a circle (flat: the third is ~0) from a helix (its drift along the axis: 0.2 and
    up on the generator's helices), and a line (both ~0) from a turn: a per-axis MLP on offsets
    does not find these products of coordinates on its own (bench/RESULTS.md). Rotation- and
    scale-invariant. The eigenvalues of the 3 x 3 covariance in closed form (the trigonometric
    solution of its characteristic cubic), which exports to ONNX as plain arithmetic; in float64
    but for the angle, since float32's rounding alone lifts a line's second spread to ~0.01.
    """
    # No gradient through them: sqrt and acos have unbounded slopes at 0 and +-1, where flat and
    # straight tracks sit; the features describe the track, the positions' own loss trains it.
    w = world.detach().double()
    x = w - w.mean(dim=1, keepdim=True)
    c = torch.einsum("nti,ntj->nij", x, x) / world.shape[1]  # (N, 3, 3)
    a, b, f = c[:, 0, 0], c[:, 1, 1], c[:, 2, 2]
    d, e, g = c[:, 0, 1], c[:, 0, 2], c[:, 1, 2]
    q = (a + b + f) / 3
    off = d * d + e * e + g * g
    p = torch.sqrt(((a - q) ** 2 + (b - q) ** 2 + (f - q) ** 2 + 2 * off) / 6).clamp_min(1e-12)
    # r = det((C - q I) / p) / 2, in [-1, 1] up to rounding.
    a1, b1, f1 = (a - q) / p, (b - q) / p, (f - q) / p
    d1, e1, g1 = d / p, e / p, g / p
    det = a1 * (b1 * f1 - g1 * g1) - d1 * (d1 * f1 - g1 * e1) + e1 * (d1 * g1 - b1 * e1)
    # ONNX Runtime has Acos for float32 only; its rounding here moves the spreads by < 1e-3.
    phi = torch.acos((det / 2).clamp(-1.0, 1.0).float()).double() / 3
    largest = q + 2 * p * torch.cos(phi)
    smallest = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    middle = 3 * q - largest - smallest
    top = largest.clamp_min(1e-12)
    return torch.sqrt(torch.stack([middle / top, smallest / top], dim=1).clamp(0.0, 1.0)).to(world.dtype)


"""A track's shape as features: offsets from its last point, steps and changes of steps."""

from __future__ import annotations

import torch


def motion_features_dim(frames: int) -> int:
    """Width of :func:`motion_features` for ``frames`` points: T offsets, T - 1 steps, T - 2 changes."""
    return 3 * (frames + (frames - 1) + (frames - 2))


def motion_features(
    world: torch.Tensor, offset_scale: torch.Tensor, step_scale: torch.Tensor
) -> torch.Tensor:
    """(N, T, 3) world track -> (N, 3 (3T - 3)): offsets from the last point, steps, step changes.

    Translation-invariant: the shape of the path, not where it is. ``offset_scale`` and
    ``step_scale`` (3,) are the spreads of offsets and steps on the training split.
    """
    n = world.shape[0]
    offsets = (world - world[:, -1:]) / offset_scale
    steps = (world[:, 1:] - world[:, :-1]) / step_scale
    changes = steps[:, 1:] - steps[:, :-1]
    return torch.cat([offsets.reshape(n, -1), steps.reshape(n, -1), changes.reshape(n, -1)], dim=1)


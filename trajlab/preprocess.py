"""Clip preprocessing shared by training and serving (one copy, not two).

Models take float32 tensors laid out (N, C, T, H, W): pixels scaled to [0, 1],
then normalised per channel with the mean and std stored in the model's
metadata. The trainer uses this on its batches and the encoder on requests, so
what is served sees exactly what was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Per-channel statistics of the rendered clips (mostly dark background with a
# bright sphere). Fixed rather than measured per dataset so that every model and
# profile shares one input convention.
DEFAULT_MEAN: tuple[float, float, float] = (0.2, 0.2, 0.2)
DEFAULT_STD: tuple[float, float, float] = (0.25, 0.25, 0.25)


def to_model_input(
    clips: np.ndarray,
    mean: Sequence[float] = DEFAULT_MEAN,
    std: Sequence[float] = DEFAULT_STD,
) -> np.ndarray:
    """(N, T, H, W, C) or (T, H, W, C) uint8 -> (N, C, T, H, W) float32, normalised."""
    x = np.asarray(clips)
    if x.ndim == 4:
        x = x[None]
    if x.ndim != 5:
        raise ValueError(f"clips must be (N, T, H, W, C), got shape {x.shape}")
    c = x.shape[-1]
    m = np.asarray(mean, dtype=np.float32)
    s = np.asarray(std, dtype=np.float32)
    if x.dtype != np.uint8:
        x = x.astype(np.float32, copy=False)
    # One output allocation, filled in place in the (N, C, T, H, W) layout: the same float32
    # operations in the same order as ((x / 255) - mean) / std, so the same bits, without the
    # four temporaries (each a fresh, page-faulting allocation) a chained expression makes.
    out = np.empty((x.shape[0], c, *x.shape[1:4]), dtype=np.float32)
    np.multiply(x.transpose(0, 4, 1, 2, 3), np.float32(1.0 / 255.0), out=out)
    out -= m.reshape(1, c, 1, 1, 1)
    out /= s.reshape(1, c, 1, 1, 1)
    return out

"""Layers the seed's conv encoders share: a Conv3d-BN-ReLU block and an exportable adaptive pool."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, padding=pad, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


def pool_grid_for(wanted: Sequence[int], available: tuple[int, int, int]) -> tuple[int, int, int]:
    # Never ask the pool for more cells than the feature map has (that would
    # upsample) and use divisors, so every cell averages the same number of inputs.
    out = []
    for w, a in zip(wanted, available, strict=True):
        g = max(1, min(int(w), a))
        while a % g:
            g -= 1
        out.append(g)
    return out[0], out[1], out[2]


def adaptive_avg_pool(available: tuple[int, int, int], grid: tuple[int, int, int]) -> nn.AvgPool3d:
    """Adaptive average pooling to ``grid`` for a known input size ``available``.

    The input size of a branch model is fixed (metadata records it), so the adaptive
    pool is computed here as the equivalent fixed AvgPool3d: identical numbers, and
    it exports to ONNX, which has no adaptive 3D pooling operator.
    """
    kernel = tuple(a // g for a, g in zip(available, grid, strict=True))
    return nn.AvgPool3d(kernel, stride=kernel)


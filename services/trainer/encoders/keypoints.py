"""Spatial-softmax keypoints: where in each frame a feature map peaks, as numbers a linear layer reads.

A conv encoder's average pool keeps *what* is in a cell of its grid but blurs *where*: a 64x64
frame pooled to a 4x4 grid places the object within 16 pixels, while a forecast in world units
needs it within a pixel or two. The spatial softmax (Levine, Finn et al., "End-to-End Training of
Deep Visuomotor Policies", JMLR 2016; Finn et al., "Deep Spatial Autoencoders", ICRA 2016) turns
each of K learned feature maps into a distribution over the frame's pixels and returns its
expected coordinates: sub-pixel positions, differentiable, a handful of numbers per frame. The
distribution's spread is returned too, which follows the object's apparent size (and so its
depth). This is a pooling of the encoder's own features, learned end to end; it is not the
branch's track perception (no mask, no sphere fit, no depth read off the brightness).
::

    x (N, C, T, H, W) -> Conv3d 1x1x1 -> K maps (N, K, T, H, W)
      -> softmax over H*W per (map, frame) -> E[u], E[v], sqrt(Var u + Var v)
      -> (N, K * T * 3)
"""

from __future__ import annotations

import torch
from torch import nn


class SpatialSoftmaxKeypoints(nn.Module):
    """K keypoints per frame, each (u, v, spread) with u, v in [-1, 1] across the width and height."""

    def __init__(self, in_channels: int, keypoints: int, frames: int, height: int, width: int) -> None:
        super().__init__()
        if keypoints < 1:
            raise ValueError(f"keypoints must be at least 1, got {keypoints}")
        self.maps = nn.Conv3d(in_channels, keypoints, 1)
        v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        # (H*W, 2): each pixel's (u, v), the softmax's weights times it are the expected position
        self.register_buffer("grid", torch.stack([u.reshape(-1), v.reshape(-1)], dim=1), persistent=False)
        self.out_dim = keypoints * frames * 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.maps(x)  # (N, K, T, H, W)
        n, k, t = logits.shape[:3]
        weights = torch.softmax(logits.reshape(n, k, t, -1), dim=-1)  # (N, K, T, HW)
        mean = weights @ self.grid  # (N, K, T, 2)
        second = weights @ (self.grid * self.grid)  # (N, K, T, 2)
        spread = torch.sqrt((second - mean * mean).sum(dim=-1, keepdim=True).clamp_min(1e-8))
        return torch.cat([mean, spread], dim=-1).reshape(n, -1)

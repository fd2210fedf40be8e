"""Spatial-softmax keypoints: where in each frame a feature map peaks, and what the input is there.

A conv encoder's average pool keeps *what* is in a cell of its grid but blurs *where*: a 64x64
frame pooled to a 4x4 grid places the object within 16 pixels, while a forecast in world units
needs it within a pixel or two. The spatial softmax (Levine, Finn et al., "End-to-End Training of
Deep Visuomotor Policies", JMLR 2016; Finn et al., "Deep Spatial Autoencoders", ICRA 2016) turns
each of K learned feature maps into a distribution over the frame's pixels and returns its
expected coordinates: sub-pixel positions, differentiable, a handful of numbers per frame. Two
more readings of the same distribution carry depth: its spread, which follows the object's
apparent size, and the encoder's input channels averaged under it (with the seed's stem, the
value plane the renderer dims with distance among them). This is a pooling of the encoder's own
features, learned end to end; it is not the branch's track perception (no mask, no sphere fit,
no supervision by the true positions).
::

    maps (N, Cm, T, H, W) -> Conv3d 1x1x1 -> K logit maps (N, K, T, H, W)
      -> softmax over H*W per (map, frame) = weights
      -> E[u], E[v], sqrt(Var u + Var v)                  (N, K, T, 3)
      [-> weights . input (N, Ci, T, H, W)                (N, K, T, Ci)]
      -> (N, K * T * (3 [+ Ci]))
"""

from __future__ import annotations

import torch
from torch import nn

# The maps' initial weights are scaled up by this: at PyTorch's default initialisation the
# softmax over a full-resolution frame is nearly uniform, every keypoint sits at the centre and
# its gradient is tiny; sharper maps start where the features peak (bench/RESULTS.md).
SHARPEN = 10.0


class SpatialSoftmaxKeypoints(nn.Module):
    """K keypoints per frame: (u, v, spread) with u, v in [-1, 1] across the width and height,
    then, given ``input_channels`` > 0, the input's channels averaged under each keypoint's weights."""

    def __init__(
        self, in_channels: int, keypoints: int, frames: int, height: int, width: int, input_channels: int = 0
    ) -> None:
        super().__init__()
        if keypoints < 1:
            raise ValueError(f"keypoints must be at least 1, got {keypoints}")
        self.maps = nn.Conv3d(in_channels, keypoints, 1)
        with torch.no_grad():
            self.maps.weight.mul_(SHARPEN)
        v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        # (H*W, 2): each pixel's (u, v); the softmax's weights times it are the expected position
        self.register_buffer("grid", torch.stack([u.reshape(-1), v.reshape(-1)], dim=1), persistent=False)
        self.input_channels = input_channels
        self.out_dim = keypoints * frames * (3 + input_channels)

    def forward(self, maps: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """``maps`` (N, Cm, T, H, W); ``inputs`` (N, Ci, T, H, W) at the same resolution when the
        layer was built with ``input_channels`` Ci."""
        logits = self.maps(maps)  # (N, K, T, H, W)
        n, k, t = logits.shape[:3]
        weights = torch.softmax(logits.reshape(n, k, t, -1), dim=-1)  # (N, K, T, HW)
        mean = weights @ self.grid  # (N, K, T, 2)
        second = weights @ (self.grid * self.grid)  # (N, K, T, 2)
        spread = torch.sqrt((second - mean * mean).sum(dim=-1, keepdim=True).clamp_min(1e-8))
        parts = [mean, spread]
        if self.input_channels:
            if inputs is None or inputs.shape[1] != self.input_channels:
                got = None if inputs is None else inputs.shape[1]
                raise ValueError(
                    f"keypoints were built to read {self.input_channels} input channels, got {got}"
                )
            # (N, T, K, HW) @ (N, T, HW, Ci) -> (N, T, K, Ci) -> (N, K, T, Ci)
            per_frame = inputs.flatten(3).permute(0, 2, 3, 1)
            read = (weights.transpose(1, 2) @ per_frame).transpose(1, 2)
            parts.append(read)
        return torch.cat(parts, dim=-1).reshape(n, -1)

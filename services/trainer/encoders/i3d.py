"""The seed's I3D-like 3D CNN as a zoo encoder (``i3d``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.encoders.keypoints import SpatialSoftmaxKeypoints
from services.trainer.encoders.layers import adaptive_avg_pool, conv_bn_relu, pool_grid_for
from services.trainer.registry import ENCODERS


class I3DEncoder(VideoEncoder):
    """Three Conv3d-BN-ReLU blocks with 3D max pooling, then an adaptive average pool to a grid.

    Taps: ``block1`` (block 1's conv, every frame at full resolution) and ``block2`` (block 2's
    conv, every frame at half resolution), both before time is pooled.
    """

    def __init__(
        self,
        blocks: nn.Sequential,
        pool: nn.Module,
        out_dim: int,
        taps: dict[str, TapSpec],
        keypoints: SpatialSoftmaxKeypoints | None = None,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.pool = pool
        self.keypoints = keypoints
        self.out_dim = out_dim + (0 if keypoints is None else keypoints.out_dim)
        self.taps = taps

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        first = self.blocks[0](clip)  # (N, c1, T, H, W): block 1's conv, full resolution
        second = self.blocks[1:3](first)  # (N, c2, T, H/2, W/2): block 2 before time is pooled
        pooled = torch.flatten(self.pool(self.blocks[3:](second)), 1)
        if self.keypoints is not None:
            pooled = torch.cat([pooled, self.keypoints(first, clip)], dim=1)
        return VideoFeatures(pooled, {"block1": first, "block2": second})


@ENCODERS.register("i3d", source="trajlab seed (after Carreira & Zisserman, CVPR 2017)")
def create_i3d(
    *,
    in_channels: int = 3,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    channels: Sequence[int] = (16, 32, 64),
    pool_grid: Sequence[int] = (4, 4, 4),
    keypoints: int = 0,
) -> I3DEncoder:
    """I3D-like 3D CNN (after Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

    Inflated 3x3x3 convolutions; like I3D the first pooling keeps the time axis so
    early motion is not averaged away. The final adaptive average pool keeps a
    small (T', H', W') grid rather than one vector, because the forecast head must
    read *where* and *when* the object is, which a global average erases.
    ::

        clip (N, C, T, H, W)
          -> Conv3d 3x3x3 -> BN -> ReLU = tap block1         (N, c1, T,   H,   W)
          -> MaxPool (1,2,2) -> Conv3d 3x3x3 -> BN -> ReLU = tap block2   (N, c2, T, H/2, W/2)
          -> MaxPool (2,2,2)                                  (N, c2, T/2, H/4, W/4)
          -> Conv3d 3x3x3 -> BN -> ReLU -> MaxPool (2,2,2)    (N, c3, T/4, H/8, W/8)
          -> adaptive average pool to pool_grid, flatten = pooled   (N, c3 t' h' w')

    ``keypoints`` K > 0 appends K spatial-softmax keypoints per frame read off block 1 at full
    resolution (:mod:`services.trainer.encoders.keypoints`): each frame's (u, v, spread) of K
    learned maps and the encoder's C input channels averaged under each, + K * T * (3 + C)
    features: where the object is to a fraction of a pixel, where the grid places it to 16, and
    the brightness and size its depth is read from. For branches without the track perception.
    """
    if len(channels) != 3:
        raise ValueError(f"channels must have 3 entries (one per block), got {list(channels)}")
    if frames < 4 or height < 8 or width < 8:
        raise ValueError(f"clip too small for three pooling stages: T={frames}, H={height}, W={width}")
    c1, c2, c3 = channels
    blocks = nn.Sequential(
        conv_bn_relu(in_channels, c1),
        nn.MaxPool3d((1, 2, 2)),
        conv_bn_relu(c1, c2),
        nn.MaxPool3d((2, 2, 2)),
        conv_bn_relu(c2, c3),
        nn.MaxPool3d((2, 2, 2)),
    )
    available = (frames // 4, height // 8, width // 8)
    grid = pool_grid_for(pool_grid, available)
    taps = {"block1": TapSpec(c1, 1, 1), "block2": TapSpec(c2, 1, 2)}
    if keypoints < 0:
        raise ValueError(f"keypoints must be 0 (none) or more, got {keypoints}")
    kp = (
        SpatialSoftmaxKeypoints(c1, keypoints, frames, height, width, input_channels=in_channels)
        if keypoints
        else None
    )
    return I3DEncoder(blocks, adaptive_avg_pool(available, grid), c3 * grid[0] * grid[1] * grid[2], taps, kp)

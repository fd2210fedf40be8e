"""The seed's dual-pathway (SlowFast-like) CNN as a zoo encoder (``dual_pathway``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.encoders.layers import adaptive_avg_pool, conv_bn_relu, pool_grid_for
from services.trainer.registry import ENCODERS


class DualPathwayEncoder(VideoEncoder):
    """Motion pathway (every frame, full resolution) + context pathway (sparse frames, low resolution).

    Taps: ``motion1`` and ``motion2``, the motion pathway's stage-1 and stage-2 convs (every
    frame, full and half resolution).
    """

    def __init__(
        self,
        *,
        motion_stages: nn.ModuleList,
        context_stages: nn.ModuleList,
        laterals: nn.ModuleList,
        alpha: int,
        motion_pool: nn.Module,
        context_pool: nn.Module,
        out_dim: int,
        taps: dict[str, TapSpec],
    ) -> None:
        super().__init__()
        self.motion_stages = motion_stages
        self.context_stages = context_stages
        self.laterals = laterals
        self.alpha = alpha
        self.motion_pool = motion_pool
        self.context_pool = context_pool
        self.out_dim = out_dim
        self.taps = taps

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        motion = clip
        # Every alpha-th frame at half resolution: the cheap view of the scene.
        context = nn.functional.avg_pool3d(clip[:, :, :: self.alpha], kernel_size=(1, 2, 2))
        taps: dict[str, torch.Tensor] = {}
        for i, (m_stage, c_stage, lateral) in enumerate(
            zip(self.motion_stages, self.context_stages, self.laterals, strict=True)
        ):
            if i < 2:  # stages 1 and 2's convs before pooling are the taps
                conv = m_stage[0](motion)
                taps[f"motion{i + 1}"] = conv
                motion = m_stage[1:](conv)
            else:
                motion = m_stage(motion)
            context = c_stage(context)
            # Lateral fusion: time-strided conv brings motion features to the context rate.
            context = torch.cat([context, lateral(motion)], dim=1)
        pooled = torch.cat(
            [torch.flatten(self.motion_pool(motion), 1), torch.flatten(self.context_pool(context), 1)], dim=1
        )
        return VideoFeatures(pooled, taps)


@ENCODERS.register("dual_pathway", source="trajlab seed (after Feichtenhofer et al., SlowFast, ICCV 2019)")
def create_dual_pathway(
    *,
    in_channels: int = 3,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    channels: Sequence[int] = (16, 32, 64),
    pool_grid: Sequence[int] = (4, 4, 4),
    motion_channel_ratio: int = 2,
    alpha: int = 4,
) -> DualPathwayEncoder:
    """Dual-pathway (SlowFast-like) encoder (after Feichtenhofer et al., "SlowFast Networks", ICCV 2019).

    The *motion pathway* sees every frame at full resolution with thin channels
    (``channels // motion_channel_ratio``) and never pools time, so it keeps fast
    motion; the *context pathway* sees every ``alpha``-th frame at half resolution
    with wide channels. After each stage a lateral Conv3d (kernel 5x1x1, time stride
    ``alpha``) carries motion features into the context pathway (concatenated).
    Both pathways are pooled to a small grid, flattened and concatenated.
    ::

        clip (N, C, T, H, W)
          motion:  (N, C, T, H, W)                  context: (N, C, T/a, H/2, W/2)
          stage 1: conv = tap motion1 (N, m1, T, H, W) -> pool (N, m1, T, H/2, W/2)
                                                    conv -> (N, c1, T/a, H/2, W/2) ++ lateral(2*m1)
          stage 2: conv = tap motion2 (N, m2, T, H/2, W/2) -> pool (N, m2, T, H/4, W/4)
                                                    conv+pool -> (N, c2, T/a, H/4, W/4) ++ lateral(2*m2)
          stage 3: conv -> (N, m3, T, H/8, W/8)     conv+pool -> (N, c3, T/a, H/8, W/8) ++ lateral(2*m3)
          pool both to the grid, flatten, concatenate = pooled (N, out_dim)
    """
    if len(channels) != 3:
        raise ValueError(f"channels must have 3 entries (one per stage), got {list(channels)}")
    if alpha < 1 or frames < alpha:
        raise ValueError(f"alpha must be in [1, frames]; got alpha={alpha}, frames={frames}")
    if height < 16 or width < 16:
        raise ValueError(f"clip too small for the dual pathway: H={height}, W={width} (need >= 16)")
    m_ch = [max(4, c // motion_channel_ratio) for c in channels]
    motion_stages = nn.ModuleList()
    context_stages = nn.ModuleList()
    laterals = nn.ModuleList()
    m_in, c_in = in_channels, in_channels
    for i in range(3):
        motion_stages.append(nn.Sequential(conv_bn_relu(m_in, m_ch[i]), nn.MaxPool3d((1, 2, 2))))
        # The context pathway starts at half resolution, so it pools from stage 2 on.
        c_layers: list[nn.Module] = [conv_bn_relu(c_in, channels[i])]
        if i > 0:
            c_layers.append(nn.MaxPool3d((1, 2, 2)))
        context_stages.append(nn.Sequential(*c_layers))
        laterals.append(
            nn.Sequential(
                nn.Conv3d(
                    m_ch[i], 2 * m_ch[i], (5, 1, 1), stride=(alpha, 1, 1), padding=(2, 0, 0), bias=False
                ),
                nn.BatchNorm3d(2 * m_ch[i]),
                nn.ReLU(inplace=True),
            )
        )
        m_in = m_ch[i]
        c_in = channels[i] + 2 * m_ch[i]
    context_frames = -(-frames // alpha)
    m_avail = (frames, height // 8, width // 8)
    c_avail = (context_frames, height // 8, width // 8)
    m_grid = pool_grid_for(pool_grid, m_avail)
    c_grid = pool_grid_for(pool_grid, c_avail)
    m_feat = m_ch[2] * m_grid[0] * m_grid[1] * m_grid[2]
    c_feat = c_in * c_grid[0] * c_grid[1] * c_grid[2]
    return DualPathwayEncoder(
        motion_stages=motion_stages,
        context_stages=context_stages,
        laterals=laterals,
        alpha=alpha,
        motion_pool=adaptive_avg_pool(m_avail, m_grid),
        context_pool=adaptive_avg_pool(c_avail, c_grid),
        out_dim=m_feat + c_feat,
        taps={"motion1": TapSpec(m_ch[0], 1, 1), "motion2": TapSpec(m_ch[1], 1, 2)},
    )

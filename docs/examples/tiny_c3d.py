"""A tiny C3D (after Tran et al., "Learning Spatiotemporal Features with 3D Convolutional
Networks", ICCV 2015): the worked example of docs/ADDING_A_MODEL.md.

Everything an encoder in the zoo needs is in this one file: a :class:`VideoEncoder`
subclass that sets ``out_dim`` and ``taps`` and returns :class:`VideoFeatures`, and a
builder registered by name. To put it in the zoo, copy it to
``services/trainer/encoders/tiny_c3d.py`` and import it from that package's
``__init__.py``; a test (tests/unit/trainer/test_zoo_example.py) imports it from here.
::

    clip (N, C, T, H, W)                         T a multiple of 2, H and W of 4
      -> Conv3d 3x3x3 -> ReLU                    tap conv1 (N, c1, T,   H,   W)    strides t1 s1
      -> MaxPool (1,2,2) -> Conv3d 3x3x3 -> ReLU tap conv2 (N, c2, T,   H/2, W/2)  t1 s2
      -> MaxPool (2,2,2) -> Conv3d 3x3x3 -> ReLU tap conv3 (N, c3, T/2, H/4, W/4)  t2 s4
      -> global average                          pooled (N, c3)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.registry import ENCODERS
from trajlab.errors import ConfigError


class TinyC3D(VideoEncoder):
    """Three 3x3x3 conv layers; each layer's output is a tap, finest first."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Sequential(nn.Conv3d(in_channels, c1, 3, padding=1), nn.ReLU())
        self.conv2 = nn.Sequential(nn.MaxPool3d((1, 2, 2)), nn.Conv3d(c1, c2, 3, padding=1), nn.ReLU())
        self.conv3 = nn.Sequential(nn.MaxPool3d((2, 2, 2)), nn.Conv3d(c2, c3, 3, padding=1), nn.ReLU())
        # What readers of the taps may rely on, known before any clip is seen.
        self.out_dim = c3
        self.taps = {
            "conv1": TapSpec(channels=c1, temporal_stride=1, spatial_stride=1),
            "conv2": TapSpec(channels=c2, temporal_stride=1, spatial_stride=2),
            "conv3": TapSpec(channels=c3, temporal_stride=2, spatial_stride=4),
        }

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        x1 = self.conv1(clip)
        x2 = self.conv2(x1)
        x3 = self.conv3(x2)
        return VideoFeatures(pooled=x3.mean(dim=(2, 3, 4)), taps={"conv1": x1, "conv2": x2, "conv3": x3})


@ENCODERS.register("tiny_c3d", source="docs/examples (after Tran et al. 2015)", origin="example")
def create_tiny_c3d(
    *, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
    channels: Sequence[int] = (8, 16, 32),
) -> TinyC3D:
    """Tiny C3D for clips (N, in_channels, frames, height, width); shapes in the module docstring."""
    if frames % 2 or height % 4 or width % 4:
        raise ConfigError(f"encoder tiny_c3d: needs frames a multiple of 2 and height, width of 4, "
                          f"got {frames}x{height}x{width}")
    if len(channels) != 3:
        raise ConfigError(f"encoder tiny_c3d: channels needs 3 entries, got {list(channels)}")
    return TinyC3D(in_channels, [int(c) for c in channels])

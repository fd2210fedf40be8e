# Architecture after torchvision/models/video/s3d.py (torchvision 0.28),
# Copyright (c) Soumith Chintala 2016, BSD 3-Clause License (see LICENSE and NOTICE in this directory).
"""S3D of Xie et al., "Rethinking Spatiotemporal Feature Learning" (ECCV 2018): an Inception
network whose 3D convs are factored into a spatial (1xkxk) and a temporal (kx1x1) conv.

Module and parameter names are torchvision's; ``width_mult`` scales every channel count
(1.0 is torchvision's ``s3d``). The stem strides time by 2, so no stage keeps every frame.
::

    clip (N, C, T, H, W)
      -> features[0:4]  sep-conv 7 /2, max-pool (1,2,2), 1x1, sep-conv 3   (N, 192m, T/2, H/4, W/4)
      -> features[4:7]  max-pool (1,2,2), mixed 3b, 3c                     (N, 480m, T/2, H/8, W/8)
      -> features[7:13] max-pool /2, mixed 4b..4f                          (N, 832m, T/4, H/16, W/16)
      -> features[13:]  max-pool /2, mixed 5b, 5c                          (N, 1024m, T/8, H/32, W/32)
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

Norm = partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)


def conv_norm_act(c_in: int, c_out: int, kernel: int | tuple[int, int, int] = 1,
                  stride: int | tuple[int, int, int] = 1,
                  padding: int | tuple[int, int, int] = 0) -> nn.Sequential:
    """torchvision's Conv3dNormActivation: conv (no bias), BN, ReLU."""
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False), Norm(c_out),
                         nn.ReLU(inplace=True))


class TemporalSeparableConv(nn.Sequential):
    """A 1xkxk conv then a kx1x1 conv, each with BN and ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(
            conv_norm_act(in_planes, out_planes, (1, kernel_size, kernel_size), (1, stride, stride),
                          (0, padding, padding)),
            conv_norm_act(out_planes, out_planes, (kernel_size, 1, 1), (stride, 1, 1), (padding, 0, 0)),
        )


class SepInceptionBlock3D(nn.Module):
    """Four branches (1x1; 1x1 -> sep 3; 1x1 -> sep 3; max-pool -> 1x1), concatenated."""

    def __init__(self, in_planes: int, b0_out: int, b1_mid: int, b1_out: int, b2_mid: int, b2_out: int,
                 b3_out: int) -> None:
        super().__init__()
        self.out_channels = b0_out + b1_out + b2_out + b3_out
        self.branch0 = conv_norm_act(in_planes, b0_out)
        self.branch1 = nn.Sequential(conv_norm_act(in_planes, b1_mid),
                                     TemporalSeparableConv(b1_mid, b1_out, 3, 1, 1))
        self.branch2 = nn.Sequential(conv_norm_act(in_planes, b2_mid),
                                     TemporalSeparableConv(b2_mid, b2_out, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(kernel_size=(3, 3, 3), stride=1, padding=1),
                                     conv_norm_act(in_planes, b3_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), 1)


# torchvision's mixed blocks (b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out) at full width.
_MIXED = {
    "3b": (64, 96, 128, 16, 32, 32), "3c": (128, 128, 192, 32, 96, 64),
    "4b": (192, 96, 208, 16, 48, 64), "4c": (160, 112, 224, 24, 64, 64),
    "4d": (128, 128, 256, 24, 64, 64), "4e": (112, 144, 288, 32, 64, 64),
    "4f": (256, 160, 320, 32, 128, 128),
    "5b": (256, 160, 320, 32, 128, 128), "5c": (384, 192, 384, 48, 128, 128),
}

# Index in ``features`` of the last module of each stage, and that stage's (T, H, W) stride.
STAGES = {"conv_2c": (3, (2, 4, 4)), "mixed_3c": (6, (2, 8, 8)), "mixed_4f": (12, (4, 16, 16)),
          "mixed_5c": (15, (8, 32, 32))}


class S3D(nn.Module):
    """S3D's feature stack; no pooling or classifier (the zoo's wrapper pools)."""

    def __init__(self, *, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()

        def w(c: int) -> int:
            return max(1, round(c * width_mult))

        mods: list[nn.Module] = [
            TemporalSeparableConv(in_channels, w(64), 7, 2, 3),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            conv_norm_act(w(64), w(64)),
            TemporalSeparableConv(w(64), w(192), 3, 1, 1),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        ]
        c = w(192)
        for name in ("3b", "3c", "pool", "4b", "4c", "4d", "4e", "4f", "pool2", "5b", "5c"):
            if name == "pool":
                mods.append(nn.MaxPool3d(kernel_size=(3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1)))
                continue
            if name == "pool2":
                mods.append(nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0)))
                continue
            block = SepInceptionBlock3D(c, *(w(x) for x in _MIXED[name]))
            mods.append(block)
            c = block.out_channels
        self.features = nn.Sequential(*mods)
        self.stage_channels = {
            "conv_2c": w(192),
            "mixed_3c": self.features[6].out_channels,
            "mixed_4f": self.features[12].out_channels,
            "mixed_5c": self.features[15].out_channels,
        }

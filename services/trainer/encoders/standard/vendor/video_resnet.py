# Architecture after torchvision/models/video/resnet.py (torchvision 0.28),
# Copyright (c) Soumith Chintala 2016, BSD 3-Clause License (see LICENSE and NOTICE in this directory).
"""Video ResNets of Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action
Recognition" (CVPR 2018): R3D (3x3x3 convs), MC3 (3D convs in the first stage, 2D after)
and R(2+1)D (each 3D conv factored into a 1x3x3 spatial and a 3x1x1 temporal conv).

Module and parameter names are torchvision's; widths and blocks per stage are knobs
(torchvision's ``*_18`` are widths (64, 128, 256, 512), blocks (2, 2, 2, 2)).
::

    clip (N, C, T, H, W)
      -> stem: conv (3|1)x7x7 stride (1,2,2)        (N, w0, T, H/2, W/2)
      -> layer1 (stride 1)                          (N, w0, T, H/2, W/2)
      -> layer2 (stride 2; MC3: 1 in time)          (N, w1, T/2, H/4, W/4)
      -> layer3 (stride 2)                          (N, w2, T/4, H/8, W/8)
      -> layer4 (stride 2)                          (N, w3, T/8, H/16, W/16)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class Conv3DSimple(nn.Conv3d):
    """A full 3x3x3 convolution (R3D)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride, padding=padding,
                         bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A 1x3x3 spatial conv, BN, ReLU, then a 3x1x1 temporal conv (R(2+1)D)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                      padding=(padding, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """A 1x3x3 convolution: space only, time untouched (MC3's later stages)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                         padding=(0, padding, padding), bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return 1, stride, stride


ConvBuilder = type[Conv3DSimple] | type[Conv2Plus1D] | type[Conv3DNoTemporal]


class BasicBlock(nn.Module):
    """Two convs with BN and a residual connection (ResNet-18's block)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, conv_builder: ConvBuilder, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        # R(2+1)D's mid width: the factored pair has the parameters of one 3x3x3 conv.
        midplanes = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(conv_builder(inplanes, planes, midplanes, stride), nn.BatchNorm3d(planes),
                                   nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


def basic_stem(in_channels: int, width: int) -> nn.Sequential:
    """R3D / MC3 stem: a 3x7x7 conv, stride 2 in space."""
    return nn.Sequential(
        nn.Conv3d(in_channels, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def r2plus1d_stem(in_channels: int, width: int) -> nn.Sequential:
    """R(2+1)D stem: a 1x7x7 spatial conv then a 3x1x1 temporal conv (45 -> 64 at full width)."""
    mid = max(1, (45 * width) // 64)
    return nn.Sequential(
        nn.Conv3d(in_channels, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """Stem and four residual stages; no pooling or classifier (the zoo's wrapper pools)."""

    def __init__(self, *, conv_makers: Sequence[ConvBuilder], stem: nn.Sequential, widths: Sequence[int],
                 blocks: Sequence[int]) -> None:
        super().__init__()
        if len(conv_makers) != 4 or len(widths) != 4 or len(blocks) != 4:
            raise ValueError("a video ResNet has 4 stages: conv_makers, widths, blocks need 4 entries each")
        self.inplanes = widths[0]
        self.stem = stem
        self.strides: list[tuple[int, int, int]] = []  # (time, height, width) stride of each stage's output
        total = [1, 2, 2]  # the stem's stride
        for i, (maker, planes, n) in enumerate(zip(conv_makers, widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", self._make_layer(maker, planes, n, stride))
            step = maker.get_downsample_stride(stride)
            total = [a * b for a, b in zip(total, step, strict=True)]
            self.strides.append((total[0], total[1], total[2]))
        self._initialize_weights()

    def _make_layer(self, conv_builder: ConvBuilder, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes, kernel_size=1,
                          stride=conv_builder.get_downsample_stride(stride), bias=False),
                nn.BatchNorm3d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stages(self) -> list[nn.Module]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def r3d(in_channels: int, widths: Sequence[int], blocks: Sequence[int]) -> VideoResNet:
    return VideoResNet(conv_makers=[Conv3DSimple] * 4, stem=basic_stem(in_channels, widths[0]),
                       widths=widths, blocks=blocks)


def mc3(in_channels: int, widths: Sequence[int], blocks: Sequence[int]) -> VideoResNet:
    return VideoResNet(conv_makers=[Conv3DSimple] + [Conv3DNoTemporal] * 3,
                       stem=basic_stem(in_channels, widths[0]), widths=widths, blocks=blocks)


def r2plus1d(in_channels: int, widths: Sequence[int], blocks: Sequence[int]) -> VideoResNet:
    return VideoResNet(conv_makers=[Conv2Plus1D] * 4, stem=r2plus1d_stem(in_channels, widths[0]),
                       widths=widths, blocks=blocks)

"""R3D, MC3 and R(2+1)D (Tran et al. 2018) as zoo encoders, on the vendored torchvision networks.

Each stage's output is a tap, finest first; the pooled vector is the last stage's global
average. Widths and blocks per stage are the knobs (torchvision's 18-layer networks are
``widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)``; the defaults keep the 18-layer depth
at a quarter of the width, which trains on a 2-core CPU).
::

    clip (N, C, T, H, W)                       T a multiple of 8 (MC3: any), H, W of 16
      -> VideoResNet (vendor/video_resnet.py)
           taps layer1 (N, w0, T, H/2, W/2)          strides t1 s2
                layer2 (N, w1, T/2, H/4, W/4)        t2 s4   (MC3: t1)
                layer3 (N, w2, T/4, H/8, W/8)        t4 s8   (MC3: t1)
                layer4 (N, w3, T/8, H/16, W/16)      t8 s16  (MC3: t1)
      -> global average of layer4 -> pooled (N, w3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.encoders.standard.sizes import check_clip
from services.trainer.encoders.standard.vendor import video_resnet
from services.trainer.registry import ENCODERS

ORIGIN = "vendored torchvision"
DEFAULT_WIDTHS = (16, 32, 64, 128)
DEFAULT_BLOCKS = (2, 2, 2, 2)


class VideoResNetEncoder(VideoEncoder):
    """A :class:`video_resnet.VideoResNet` behind the zoo contract."""

    def __init__(self, net: video_resnet.VideoResNet, widths: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.out_dim = int(widths[-1])
        self.taps = {
            f"layer{i + 1}": TapSpec(channels=int(w), temporal_stride=st[0], spatial_stride=st[1])
            for i, (w, st) in enumerate(zip(widths, net.strides, strict=True))
        }

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        x = self.net.stem(clip)
        taps: dict[str, torch.Tensor] = {}
        for name, stage in zip(self.taps, self.net.stages(), strict=True):
            x = stage(x)
            taps[name] = x
        return VideoFeatures(pooled=x.mean(dim=(2, 3, 4)), taps=taps)

    def library_network(self) -> video_resnet.VideoResNet:
        return self.net


def _build(
    name: str,
    make: Callable[[int, Sequence[int], Sequence[int]], video_resnet.VideoResNet],
    *, in_channels: int, frames: int, height: int, width: int,
    widths: Sequence[int], blocks: Sequence[int], time_div: int,
) -> VideoResNetEncoder:
    check_clip(name, frames=frames, height=height, width=width, time_div=time_div, space_div=16)
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(widths) != 4 or len(blocks) != 4 or min(widths) < 1 or min(blocks) < 1:
        raise ValueError(f"encoder {name}: widths and blocks need 4 positive entries (one per stage), "
                         f"got widths={list(widths)}, blocks={list(blocks)}")
    net = make(in_channels, widths, blocks)
    return VideoResNetEncoder(net, widths)


@ENCODERS.register("r3d", source="torchvision r3d_18 (Tran et al. 2018)", origin=ORIGIN)
def create_r3d(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
               widths: Sequence[int] = DEFAULT_WIDTHS, blocks: Sequence[int] = DEFAULT_BLOCKS,
) -> VideoResNetEncoder:
    """R3D: full 3x3x3 convs in every stage (see the module docstring for shapes)."""
    return _build("r3d", video_resnet.r3d, in_channels=in_channels, frames=frames, height=height,
                  width=width, widths=widths, blocks=blocks, time_div=8)


@ENCODERS.register("mc3", source="torchvision mc3_18 (Tran et al. 2018)", origin=ORIGIN)
def create_mc3(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
               widths: Sequence[int] = DEFAULT_WIDTHS, blocks: Sequence[int] = DEFAULT_BLOCKS,
) -> VideoResNetEncoder:
    """MC3: 3D convs in the first stage, 2D (1x3x3) after; time keeps every frame throughout."""
    return _build("mc3", video_resnet.mc3, in_channels=in_channels, frames=frames, height=height,
                  width=width, widths=widths, blocks=blocks, time_div=1)


@ENCODERS.register("r2plus1d", source="torchvision r2plus1d_18 (Tran et al. 2018)", origin=ORIGIN)
def create_r2plus1d(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
                    widths: Sequence[int] = DEFAULT_WIDTHS, blocks: Sequence[int] = DEFAULT_BLOCKS,
) -> VideoResNetEncoder:
    """R(2+1)D: every 3D conv factored into a spatial 1x3x3 and a temporal 3x1x1 conv."""
    return _build("r2plus1d", video_resnet.r2plus1d, in_channels=in_channels, frames=frames, height=height,
                  width=width, widths=widths, blocks=blocks, time_div=8)

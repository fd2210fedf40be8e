"""S3D (Xie et al. 2018) as a zoo encoder, on the vendored torchvision network.

``width_mult`` scales every channel count (1.0 is torchvision's ``s3d``; the default
0.25 trains on a 2-core CPU). The stem halves time, so S3D has no tap at every frame.
::

    clip (N, C, T, H, W)                        T a multiple of 8, H, W of 32
      -> S3D features (vendor/s3d.py)
           taps conv_2c  (N, 192m,  T/2, H/4,  W/4)      strides t2 s4
                mixed_3c (N, 480m,  T/2, H/8,  W/8)      t2 s8
                mixed_4f (N, 832m,  T/4, H/16, W/16)     t4 s16
                mixed_5c (N, 1024m, T/8, H/32, W/32)     t8 s32
      -> global average of mixed_5c -> pooled (N, 1024m)
"""

from __future__ import annotations

import torch

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.encoders.standard.sizes import check_clip
from services.trainer.encoders.standard.vendor.s3d import S3D, STAGES
from services.trainer.registry import ENCODERS


class S3DEncoder(VideoEncoder):
    """:class:`S3D`'s features behind the zoo contract."""

    def __init__(self, net: S3D) -> None:
        super().__init__()
        self.net = net
        self.taps = {
            name: TapSpec(channels=net.stage_channels[name], temporal_stride=st[0], spatial_stride=st[1])
            for name, (_, st) in STAGES.items()
        }
        self.out_dim = net.stage_channels["mixed_5c"]
        self._ends = {idx: name for name, (idx, _) in STAGES.items()}

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        x = clip
        taps: dict[str, torch.Tensor] = {}
        for i, module in enumerate(self.net.features):
            x = module(x)
            if i in self._ends:
                taps[self._ends[i]] = x
        return VideoFeatures(pooled=x.mean(dim=(2, 3, 4)), taps=taps)

    def library_network(self) -> S3D:
        return self.net


@ENCODERS.register("s3d", source="torchvision s3d (Xie et al. 2018)", origin="vendored torchvision")
def create_s3d(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
               width_mult: float = 0.25) -> S3DEncoder:
    """S3D with every width scaled by ``width_mult`` (see the module docstring for shapes)."""
    check_clip("s3d", frames=frames, height=height, width=width, time_div=8, space_div=32)
    if not 0 < width_mult <= 4:
        raise ValueError(f"encoder s3d: width_mult must be in (0, 4], got {width_mult}")
    net = S3D(in_channels=in_channels, width_mult=width_mult)
    return S3DEncoder(net)

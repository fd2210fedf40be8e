"""The video-encoder contract: what every encoder in the zoo gives, and nothing more.

An encoder maps a clip tensor to :class:`VideoFeatures`: one pooled feature vector per
clip plus named intermediate feature maps ("taps") with their strides. It knows nothing
of the track perception, the heads, the enhancement or the losses; whatever reads its
output (the branch model's projection, the optional perception) reads these fields only.

    clip (N, C, T, H, W) float32
      -> encoder
      -> VideoFeatures(
           pooled (N, D),                              D = encoder.out_dim
           taps {name: (N, C_i, T / st_i, H / ss_i, W / ss_i)},  strides in encoder.taps
         )

``C`` is the stem's output width (the branch model applies its stem first), so builders
take ``in_channels`` and the clip size (``frames``, ``height``, ``width``) as keyword
arguments and must work at the profile's input size.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class TapSpec:
    """What a tap is, known when the encoder is built (so readers can size their layers)."""

    channels: int  # C_i
    temporal_stride: int  # frames of the clip per step of the tap's time axis (1 = every frame)
    spatial_stride: int  # pixels of the clip per cell of the tap's H and W axes (1 = full resolution)


class VideoFeatures(NamedTuple):
    pooled: torch.Tensor  # (N, out_dim): the clip's feature vector
    taps: dict[str, torch.Tensor]  # name -> (N, C_i, T_i, H_i, W_i), as described by encoder.taps


class VideoEncoder(nn.Module):
    """Base class of the zoo's encoders. Subclasses set ``out_dim`` and ``taps`` in
    ``__init__`` and return :class:`VideoFeatures` from ``forward``.

    ``taps`` is ordered from finest to coarsest; an encoder that exposes no intermediate
    maps has none, and a perception that needs them cannot attach to it.
    """

    out_dim: int
    taps: dict[str, TapSpec]

    def forward(self, clip: torch.Tensor) -> VideoFeatures:  # pragma: no cover - abstract
        raise NotImplementedError

    def library_network(self) -> nn.Module | None:
        """The library network this encoder wraps (torchvision's, ``transformers``'), if any.

        A branch's ``weights:`` file may then hold that network's own state dict (its
        published checkpoints' names) instead of the encoder's.
        """
        return None

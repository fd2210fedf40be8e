"""The branch model's input stem, and what the perception reads back from it (the frames' value)."""

from __future__ import annotations

import torch
from torch import nn

from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD


class BackgroundSubtraction(nn.Module):
    """(N, C, T, H, W) -> (N, 2C + 3, T, H, W): frames, frames minus their temporal mean, u, v, value.

    Static background and clutter cancel in the difference, the moving object stays;
    the two coordinate planes (u, v in [-1, 1], as in CoordConv, Liu et al. 2018) let
    convolutions, which are translation-equivariant, tell *where* that object is, which
    the absolute 3D forecast needs. The value plane is the brightest colour channel of
    each pixel (HSV's V): the renderer dims the sphere with depth (``sqrt(4 / z)`` of a
    colour of any hue), so V reads depth linearly where a ReLU conv over R, G and B
    would first have to learn a max over hues (bench/RESULTS.md). Part of the model
    (and of the exported graph), not of the preprocessing, so trainer and encoder still
    share one ``to_model_input``.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coords", torch.stack([u, v])[None, :, None], persistent=False)  # (1,2,1,H,W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        coords = self.coords.expand(n, 2, t, h, w)
        value = x.amax(dim=1, keepdim=True)  # HSV's V (the normalisation is the same for R, G and B)
        return torch.cat([x, x - x.mean(dim=2, keepdim=True), coords, value], dim=1)


STEMS = ("background_subtraction", "none")


def create_stem(
    *, kind: str = "background_subtraction", in_channels: int = 3, height: int = 64, width: int = 64
) -> tuple[nn.Module, int]:
    """The input stem and the channels it outputs.

    ``background_subtraction``: 2 * in_channels + 3 (see :class:`BackgroundSubtraction`);
    ``none``: the raw frames.
    """
    if kind == "background_subtraction":
        return BackgroundSubtraction(height, width), 2 * in_channels + 3
    if kind == "none":
        return nn.Identity(), in_channels
    raise ValueError(f"stem: unknown {kind!r}; expected one of {list(STEMS)}")


def frame_value(stem: torch.Tensor) -> torch.Tensor:
    """The stem's output (N, C, T, H, W) -> each pixel's V (N, T, H, W) in [0, 1].

    Either stem starts with the normalised RGB frames (trajlab.preprocess's defaults, which
    the trainer always uses); their max, un-normalised, is HSV's V.
    """
    return stem[:, :3].amax(dim=1) * float(DEFAULT_STD[0]) + float(DEFAULT_MEAN[0])

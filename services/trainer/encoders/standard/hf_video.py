"""Video transformers from ``transformers``, built from small configs (random init, no hub).

VideoMAE (Tong et al. 2022; the ViT-B encoder its pre-training produces), TimeSformer
(Bertasius et al. 2021; divided space-time attention) and ViViT (Arnab et al. 2021;
tubelet embedding, factorised-encoder-free "model 1") come from ``transformers``' model
classes with our sizes, so they build at the profile's clip size on a 2-core CPU. Every
transformer layer's tokens, laid back on their grid, is a tap; the pooled vector is the
mean of the last layer's (normalised) patch tokens.
::

    clip (N, C, T, H, W) -> (N, T, C, H, W) for transformers
      VideoMAE    tubelet (tubelet, p, p)  -> tokens (N, T/tb*H/p*W/p, D)   taps t=tb, s=p
      TimeSformer patch (1, p, p) + [CLS]  -> tokens (N, 1+H/p*W/p*T, D)    taps t=1,  s=p
      ViViT       tubelet (tb, p, p) + [CLS] -> tokens (N, 1+T/tb*H/p*W/p, D) taps t=tb, s=p
      -> taps block1..blockL (N, D, T/t, H/s, W/s); pooled (N, D)
"""

from __future__ import annotations

import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.encoders.standard.sizes import check_clip
from services.trainer.registry import ENCODERS
from trajlab.errors import ConfigError

ORIGIN = "transformers"


class TransformerVideoEncoder(VideoEncoder):
    """A ``transformers`` video model behind the zoo contract.

    ``layout`` says how a layer's tokens sit on the (T', H', W') grid: ``"thw"`` (time
    major: VideoMAE, ViViT) or ``"hwt"`` (time minor: TimeSformer). ``cls`` is 1 when the
    sequence starts with a class token (dropped from the taps and the pool).
    """

    def __init__(self, model: nn.Module, *, hidden: int, layers: int, grid: tuple[int, int, int],
                 strides: tuple[int, int], layout: str, cls: int) -> None:
        super().__init__()
        self.model = model
        self.grid = grid
        self.layout = layout
        self.cls = cls
        self.out_dim = hidden
        self.taps = {f"block{i + 1}": TapSpec(hidden, strides[0], strides[1]) for i in range(layers)}

    def _to_map(self, tokens: torch.Tensor) -> torch.Tensor:
        n, _, d = tokens.shape
        t, h, w = self.grid
        if self.layout == "thw":
            return tokens.reshape(n, t, h, w, d).permute(0, 4, 1, 2, 3)
        return tokens.reshape(n, h, w, t, d).permute(0, 4, 3, 1, 2)

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        out = self.model(pixel_values=clip.permute(0, 2, 1, 3, 4), output_hidden_states=True)
        layers = out.hidden_states[1:]  # [0] is the embeddings
        taps = {name: self._to_map(h[:, self.cls:]) for name, h in zip(self.taps, layers, strict=True)}
        pooled = out.last_hidden_state[:, self.cls:].mean(dim=1)
        return VideoFeatures(pooled=pooled, taps=taps)

    def library_network(self) -> nn.Module:
        return self.model


def _sizes(name: str, *, hidden: int, heads: int, layers: int) -> dict[str, int]:
    if hidden % heads:
        raise ConfigError(f"encoder {name}: hidden ({hidden}) must be a multiple of heads ({heads})")
    if layers < 1:
        raise ConfigError(f"encoder {name}: layers must be >= 1, got {layers}")
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": 2 * hidden}


def _square(name: str, height: int, width: int) -> None:
    if height != width:
        raise ConfigError(f"encoder {name}: transformers' model needs square frames, got {height}x{width}")


@ENCODERS.register("videomae", source="transformers VideoMAEModel (Tong et al. 2022)", origin=ORIGIN)
def create_videomae(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
                    patch: int = 8, tubelet: int = 2, hidden: int = 64, heads: int = 4, layers: int = 2,
) -> TransformerVideoEncoder:
    """VideoMAE's encoder (ViT on tubelets, fixed sinusoidal positions); shapes in the module docstring."""
    from transformers import VideoMAEConfig, VideoMAEModel

    check_clip("videomae", frames=frames, height=height, width=width, time_div=tubelet, space_div=patch)
    _square("videomae", height, width)
    cfg = VideoMAEConfig(image_size=height, patch_size=patch, num_channels=in_channels, num_frames=frames,
                         tubelet_size=tubelet, use_mean_pooling=False, attn_implementation="eager",
                         **_sizes("videomae", hidden=hidden, heads=heads, layers=layers))
    model = VideoMAEModel(cfg)
    grid = (frames // tubelet, height // patch, width // patch)
    return TransformerVideoEncoder(model, hidden=hidden, layers=layers, grid=grid, strides=(tubelet, patch),
                                   layout="thw", cls=0)


@ENCODERS.register("timesformer", source="transformers TimesformerModel (Bertasius et al. 2021)",
                   origin=ORIGIN)
def create_timesformer(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
                       patch: int = 4, hidden: int = 64, heads: int = 4, layers: int = 2,
) -> TransformerVideoEncoder:
    """TimeSformer, divided space-time attention, one token per patch per frame; shapes above."""
    from transformers import TimesformerConfig, TimesformerModel

    check_clip("timesformer", frames=frames, height=height, width=width, time_div=1, space_div=patch)
    _square("timesformer", height, width)
    cfg = TimesformerConfig(image_size=height, patch_size=patch, num_channels=in_channels, num_frames=frames,
                            attention_type="divided_space_time", attn_implementation="eager",
                            **_sizes("timesformer", hidden=hidden, heads=heads, layers=layers))
    model = TimesformerModel(cfg)
    grid = (frames, height // patch, width // patch)
    return TransformerVideoEncoder(model, hidden=hidden, layers=layers, grid=grid, strides=(1, patch),
                                   layout="hwt", cls=1)


@ENCODERS.register("vivit", source="transformers VivitModel (Arnab et al. 2021)", origin=ORIGIN)
def create_vivit(*, in_channels: int = 3, frames: int = 16, height: int = 64, width: int = 64,
                 patch: int = 8, tubelet: int = 2, hidden: int = 64, heads: int = 4, layers: int = 2,
) -> TransformerVideoEncoder:
    """ViViT with tubelet embedding and a joint space-time encoder; shapes in the module docstring."""
    from transformers import VivitConfig, VivitModel

    check_clip("vivit", frames=frames, height=height, width=width, time_div=tubelet, space_div=patch)
    _square("vivit", height, width)
    cfg = VivitConfig(image_size=height, num_frames=frames, tubelet_size=[tubelet, patch, patch],
                      num_channels=in_channels, attn_implementation="eager",
                      **_sizes("vivit", hidden=hidden, heads=heads, layers=layers))
    model = VivitModel(cfg, add_pooling_layer=False)
    grid = (frames // tubelet, height // patch, width // patch)
    return TransformerVideoEncoder(model, hidden=hidden, layers=layers, grid=grid, strides=(tubelet, patch),
                                   layout="thw", cls=1)

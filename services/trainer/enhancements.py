"""The enhancements between the encoder's features and the heads (registered in ENHANCEMENTS).

Each enhancement maps the branch's features (N, feature_dim) to :class:`Enhanced`: what the
heads read, what the model exports as its embedding, and its own auxiliary outputs for the
loss. ``none`` is no module: the heads read the features, which are the embedding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from services.trainer.registry import ENHANCEMENTS

FEATURE_DIM = 512  # width of the branch's features, fixed by the seed spec
CODE_DIM = 128  # compression autoencoder bottleneck (512 -> 256 -> 128 -> 256 -> 512)


class Enhanced(NamedTuple):
    head_in: torch.Tensor  # (N, head_dim): what the heads read
    embedding: torch.Tensor  # (N, embedding_dim): what the model exports as its embedding
    reconstruction: torch.Tensor | None = None  # (N, feature_dim), compression only
    text_logits: torch.Tensor | None = None  # (N, K), text alignment only


@ENHANCEMENTS.register("none", source="no enhancement")
def create_no_enhancement(*, feature_dim: int = FEATURE_DIM) -> None:
    """No enhancement: features (N, feature_dim) go to the heads and are the embedding."""
    return None


class CompressionAutoencoder(nn.Module):
    """512 -> 256 -> 128 -> 256 -> 512; returns (code, reconstruction)."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def embedding_dim(self) -> int:
        return int(self.encoder[-1].out_features)

    @property
    def head_dim(self) -> int:
        return self.embedding_dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(features)
        return code, self.decoder(code)

    def enhance(self, features: torch.Tensor) -> Enhanced:
        """The heads read the code, which is also the embedding."""
        code, recon = self(features)
        return Enhanced(code, code, reconstruction=recon)


@ENHANCEMENTS.register("compression", source="trajlab seed (MAGVIT-like bottleneck)")
def create_compression_autoencoder(
    *, feature_dim: int = FEATURE_DIM, hidden_dim: int = 256, code_dim: int = CODE_DIM
) -> CompressionAutoencoder:
    """Feature compression (MAGVIT-like bottleneck): the heads read the compact code.

    Trained with a reconstruction loss (MSE of the reconstruction against the encoder
    features) next to the task losses.
    ::

        features (N, 512) -> Linear+ReLU (N, 256) -> Linear (N, 128) = code
        code (N, 128) -> Linear+ReLU (N, 256) -> Linear (N, 512) = reconstruction
    """
    enc = nn.Sequential(
        nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, code_dim)
    )
    dec = nn.Sequential(
        nn.Linear(code_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, feature_dim)
    )
    return CompressionAutoencoder(enc, dec)


class TextAlignment(nn.Module):
    """Projects video features into a text-embedding space; logits against class descriptions."""

    def __init__(self, proj: nn.Linear, class_text: torch.Tensor, init_temperature: float) -> None:
        super().__init__()
        self.proj = proj
        # Unit-norm embeddings of the class descriptions, computed once by the text encoder.
        self.register_buffer("class_text", nn.functional.normalize(class_text, dim=-1))
        # CLIP's learnable log inverse temperature.
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1.0 / init_temperature)))))

    @property
    def embedding_dim(self) -> int:
        return int(self.class_text.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.proj.in_features)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = nn.functional.normalize(self.proj(features), dim=-1)
        scale = self.logit_scale.clamp(max=4.6052).exp()  # cap at 100 as CLIP does
        return z, scale * z @ self.class_text.t()

    def enhance(self, features: torch.Tensor) -> Enhanced:
        """The heads read the features; the embedding is the text-space projection."""
        z, text_logits = self(features)
        return Enhanced(features, z, text_logits=text_logits)


@ENHANCEMENTS.register("text_alignment", source="trajlab seed (after CLIP, Radford et al. 2021)",
                       needs_class_text=True)
def create_text_alignment(
    *, feature_dim: int = FEATURE_DIM, class_text: torch.Tensor, init_temperature: float = 0.07
) -> TextAlignment:
    """CLIP-style alignment (after Radford et al., "Learning Transferable Visual Models", 2021).

    ``class_text`` (K, D) are the text encoder's embeddings of the K class
    descriptions. The loss is CLIP's InfoNCE with the class descriptions as the
    candidate texts; zero-shot classification is the nearest description.
    ::

        features (N, 512) -> Linear -> L2-normalise = z (N, D)
        logits = exp(logit_scale) * z @ normalise(class_text).T     (N, K)
    """
    if class_text.ndim != 2:
        raise ValueError(f"class_text must be (K, D), got {tuple(class_text.shape)}")
    return TextAlignment(nn.Linear(feature_dim, class_text.shape[1]), class_text.float(), init_temperature)


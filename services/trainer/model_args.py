"""What a branch model is built from: :class:`ModelArgs`, stored in checkpoints and exports.

A checkpoint stores the ModelArgs it was built with (nanoGPT-style), so export and resume
rebuild the exact model without the original config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.trainer.enhancements import FEATURE_DIM
from trajlab.profiles import CLASS_NAMES


@dataclasses.dataclass(frozen=True)
class ModelArgs:
    """Everything needed to rebuild a branch model (stored in checkpoints, nanoGPT-style)."""

    encoder: str  # "i3d" or "dual_pathway"
    enhancement: str  # "compression", "text_alignment" or "none"
    frames: int  # T, observed frames per clip
    height: int  # H, pixels
    width: int  # W, pixels
    horizon: int  # future frames forecast
    channels: tuple[int, ...] = (16, 32, 64)  # conv widths of the three blocks
    in_channels: int = 3  # RGB
    num_classes: int = len(CLASS_NAMES)
    feature_dim: int = FEATURE_DIM
    pool_grid: tuple[int, int, int] = (4, 4, 4)  # adaptive-pool output (T', H', W'); keeps where/when
    alpha: int = 4  # dual pathway: the context pathway sees every alpha-th frame
    motion_channel_ratio: int = 2  # dual pathway: motion pathway is this many times thinner
    # "background_subtraction": the encoder sees each frame, each frame minus the clip's
    # temporal mean (static background and clutter cancel) and two pixel-coordinate
    # planes; "none": raw frames only.
    stem: str = "background_subtraction"
    # Object-track readout (TrackReadout): a per-frame soft mask of the moving object whose
    # centroid and area give its 3D position through the pinhole camera below; supervised by
    # the observed positions and fed to the features. Off = the plain encoder of the seed spec.
    track: bool = False
    depth_cues: bool = False  # the track readout's depth from its mask's brightness and area (DepthCues)
    track_classifier: bool = False  # logits from the track's shape added to the head's (TrackClassifier)
    # The forecast head's prior read off the track: "parametric" (ParametricExtrapolation: each
    # class's kind of path fitted to the track) or "affine" (ClassGatedExtrapolation, learned).
    forecast_prior: str = "affine"
    # Parametric prior only: Huber re-fits after the least-squares fit (0 = least squares alone).
    prior_refits: int = 0
    # Track readout only: the largest camera shift per frame (pixels) to read off the background
    # and undo (CameraShift); 0 = none (clips without camera jitter).
    camera_shift: int = 0
    # Track readout only: each frame's sphere fitted to its pixels (SphereFit, render and
    # compare) from the readout's estimate, and what the heads read.
    sphere_fit: bool = False
    focal_px: float = 0.0  # camera focal length, pixels (track readout only)
    object_radius: float = 0.0  # the moving sphere's radius, world units (the track loss's disc target)
    text_dim: int = 0  # text-embedding width (text alignment only)
    text_encoder: str = ""  # name of the text encoder whose embeddings are baked in

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArgs:
        d = dict(d)
        for key in ("channels", "pool_grid"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


"""What a branch model is built from: :class:`ModelArgs`, stored in checkpoints and exports.

A checkpoint stores the ModelArgs it was built with (nanoGPT-style), so export and resume
rebuild the exact model without the original config. One schema end to end: the profile's
``model:`` section (:class:`trajlab.profiles.ModelConfig`) has the same keys with the same
meaning; the branch gives ``encoder``, ``enhancement`` and its ``encoder_args``, the dataset
the clip size, horizon and camera. ModelArgs written by an older trainer are refused with a
message to retrain (:class:`ModelFormatError`), never read with another meaning.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from services.trainer.enhancements import FEATURE_DIM
from trajlab.errors import FailedPrecondition
from trajlab.profiles import CLASS_NAMES

# The layout of the weights and the meaning of these fields; bumped when either changes.
# 11: the model zoo (encoder, perception and projection as separate parts; encoder_args).
# 12: the track classifier also on the position head's track (track off), with its TrackShape.
# 13: the track readout's motion-feature scales in its own TrackShape (perception.shape.*).
MODEL_FORMAT = 13


class ModelFormatError(FailedPrecondition):
    """Model arguments, a checkpoint or an exported model written by an older trainer."""


@dataclasses.dataclass(frozen=True)
class ModelArgs:
    """Everything needed to rebuild a branch model (stored in checkpoints, nanoGPT-style)."""

    encoder: str  # a registered encoder (services.trainer.registry.ENCODERS)
    enhancement: str  # a registered enhancement: "compression", "text_alignment" or "none"
    frames: int  # T, observed frames per clip
    height: int  # H, pixels
    width: int  # W, pixels
    horizon: int  # future frames forecast
    # The encoder builder's own keyword arguments (e.g. channels, pool_grid, alpha); sequences
    # are kept as tuples.
    encoder_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    in_channels: int = 3  # RGB
    num_classes: int = len(CLASS_NAMES)
    feature_dim: int = FEATURE_DIM
    # "background_subtraction": the encoder sees each frame, each frame minus the clip's
    # temporal mean (static background and clutter cancel) and u, v and value planes;
    # "none": raw frames only.
    stem: str = "background_subtraction"
    # The object-track perception (services/trainer/perception): a per-frame soft mask of the
    # moving object read off the encoder's taps, whose centroid and depth give its 3D position
    # through the pinhole camera below; supervised by the observed positions and fed to the
    # features. Off = the plain encoder. The knobs below need it on.
    track: bool = False
    depth_cues: bool = False  # the readout's depth from its mask's brightness and area (DepthCues)
    # Logits from the track's shape added to the head's (TrackClassifier): the perception's track,
    # or without it the position head's.
    track_classifier: bool = False
    # The track's principal spreads (motion.principal_spreads) among the motion features the
    # perception's summary and the track classifier read.
    track_spreads: bool = False
    # The forecast head's prior read off the track (FORECAST_PRIORS): "parametric" (each class's
    # kind of path fitted to the track) or "affine" (one learned map per class).
    forecast_prior: str = "affine"
    prior_refits: int = 0  # parametric prior only: Huber re-fits after the least-squares fit
    # The largest camera shift per frame (pixels) read off the background and undone
    # (CameraShift); 0 = none.
    camera_shift: int = 0
    # Each frame's sphere fitted to its pixels (SphereFit, render and compare) from the
    # readout's estimate, and what the heads read.
    sphere_fit: bool = False
    # Track off only: a head reading the observed positions (N, T, 3) off the features,
    # supervised by the true ones in training; the forecast prior reads them (BranchModel.position).
    position_head: bool = False
    focal_px: float = 0.0  # camera focal length, pixels (from the dataset's camera)
    object_radius: float = 0.0  # the moving sphere's radius, world units (from the dataset)
    text_dim: int = 0  # text-embedding width (text alignment only)
    text_encoder: str = ""  # name of the text encoder whose embeddings are baked in

    def __post_init__(self) -> None:
        # JSON and checkpoints give lists; the builders and equality want one form.
        object.__setattr__(
            self, "encoder_args", {k: _frozen(v) for k, v in sorted(dict(self.encoder_args).items())}
        )

    def to_dict(self) -> dict[str, Any]:
        return {"format": MODEL_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "model_args") -> ModelArgs:
        """Rebuild from :meth:`to_dict`'s output; anything an older trainer wrote is refused."""
        d = dict(d)
        found = d.pop("format", None)
        if found != MODEL_FORMAT:
            raise ModelFormatError(
                f"{source}: written by an older trainer (model format {found or 'before 11'}, this "
                f"trainer reads {MODEL_FORMAT}); its weights cannot be read with today's layout: "
                "retrain the branch"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ModelFormatError(
                f"{source}: unknown fields {unknown}; retrain the branch with this trainer"
            )
        return cls(**d)


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value

"""Profiles (dataset + training settings) and branch configs, as validated YAML.

A profile is one YAML file in ``trajlab/configs/profiles/`` (``quick``, ``seed``)
or any path; the branches are ``trajlab/configs/branches.yaml``. Both are
validated at load with errors that name the bad field.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trajlab.config import read_yaml, validate_model
from trajlab.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
PROFILE_DIR = CONFIG_DIR / "profiles"
BRANCHES_FILE = CONFIG_DIR / "branches.yaml"

# Class index = label used everywhere (arrays, model outputs). The gRPC MotionClass
# enum value of a class is its index + 1 (0 is UNSPECIFIED).
CLASS_NAMES: tuple[str, ...] = ("linear", "circular", "helical", "parabolic")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """What the generator and renderer make. Same config + seed = same bytes."""

    samples: int = Field(1200, ge=8, le=1_000_000)  # clips in all, balanced over the 4 classes
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)  # stratified validation share
    # Held-out test clips on top of ``samples`` (balanced; never trained, early-stopped or tuned on;
    # the report's headline figures). 0 = no test split.
    test_samples: int = Field(0, ge=0, le=1_000_000)
    seed: int = Field(0, ge=0)  # master seed
    frames: int = Field(16, ge=4, le=256)  # observed frames per clip (T)
    horizon: int = Field(4, ge=1, le=64)  # future frames to forecast
    height: int = Field(64, ge=16, le=1024)  # pixels
    width: int = Field(64, ge=16, le=1024)  # pixels
    fps: float = Field(8.0, gt=0.0, le=240.0)  # frames per second; t = frame / fps
    clutter: int = Field(0, ge=0, le=16)  # static distractor objects per clip
    transients: int = Field(0, ge=0, le=8)  # objects that appear and vanish mid-clip
    background_noise: float = Field(8.0, ge=0.0, le=64.0)  # std of background noise, grey levels
    camera_jitter: float = Field(0.0, ge=0.0, le=4.0)  # std of per-frame camera shake, pixels
    fov_degrees: float = Field(60.0, ge=20.0, le=120.0)  # camera's horizontal field of view, degrees
    sphere_radius: float = Field(0.45, gt=0.05, le=1.5)  # moving sphere's radius, world units


class TrainingConfig(_Strict):
    """How a trainer trains. Units in comments."""

    epochs: int = Field(30, ge=1, le=10_000)
    batch_size: int = Field(16, ge=1, le=4096)  # clips per step
    lr: float = Field(1e-3, gt=0.0, le=1.0)  # Adam learning rate
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    checkpoint_every: int = Field(5, ge=1)  # epochs between checkpoints
    keep_checkpoints: int = Field(3, ge=1)  # newest checkpoints kept on disk
    status_interval_seconds: float = Field(300.0, gt=0.0)  # status JSON cadence, seconds
    forecast_weight: float = Field(1.0, ge=0.0)  # weight of the forecast loss
    aux_weight: float = Field(0.1, ge=0.0)  # weight of reconstruction / alignment loss
    threads: int = Field(0, ge=0, le=256)  # torch intra-op threads per trainer; 0 = all cores
    seed: int = Field(0, ge=0)  # seeds weight init and the per-epoch data order (seed + epoch)
    # Runs per branch in `trajlab run`: training seeds seed, seed + 1, ... (runs b1@s<seed>, trajlab.runs).
    seeds: int = Field(1, ge=1, le=16)
    # Conv widths of the encoder's three blocks (the dual pathway's context pathway;
    # its motion pathway is half as wide). Smaller profiles may use thinner models.
    channels: tuple[int, int, int] = (16, 32, 64)
    parity_clips: int = Field(32, ge=1, le=4096)  # validation clips checked ONNX vs PyTorch
    # Mirror half the training clips left-right (and negate the targets' x): exact, as the
    # camera's principal point is the image centre and no motion class depends on x's sign.
    augment_flip: bool = True
    # The object-track readout (services.trainer.models.TrackReadout): per-frame soft mask ->
    # centroid and area -> 3D point through the dataset's camera, supervised by the observed
    # positions with weight track_weight. Off = the encoders exactly as the seed spec draws them.
    track: bool = True
    track_weight: float = Field(1.0, ge=0.0)
    # With the track: read each frame's whole-pixel camera shift (dataset.camera_jitter) off the
    # static background and take it off the track (services.trainer.models.CameraShift); a no-op
    # for clips without jitter (camera_jitter 0 builds no estimator).
    undo_camera_jitter: bool = True
    # With the track: each frame's sphere fitted to its pixels by render and compare (centre and
    # depth from its size, brightness and shading, as the renderer draws it), started from the
    # readout's point; the heads read the fitted track (services.trainer.models.SphereFit).
    # Off unless a profile turns it on (the seed profile does): on the quick profile's thin models
    # it costs more than the network (b1 quick: 85 -> 209 s; 77.5 -> 87.5 % accuracy, forecast
    # 16.5 -> 6.6 %), and it makes every export about 2x slower (b1 seed size 8.9 -> 16.6 s).
    fit_sphere: bool = False
    # With the track: each frame's depth corrected from the mask's peak brightness, area and
    # mean brightness, mixed over 5 frames (services.trainer.models.DepthCues).
    depth_cues: bool = True
    # With the track: class logits from the track's shape alone (an MLP with dropout, its own
    # cross-entropy, also on the time-reversed track) added to the classify head's
    # (services.trainer.models.TrackClassifier).
    track_classifier: bool = True
    # With the track classifier: in training it also learns on the true observed positions
    # carrying another clip's track error, scaled to depth (services.trainer.models.
    # borrowed_track_error), so it meets more noisy tracks than the training split's own.
    track_classifier_noise: bool = True
    # With the track: the forecast head corrects a prior read off the track. "parametric": each
    # class's kind of path (line, circle, helix, parabola) fitted by least squares to the whole
    # track and extrapolated, mixed by the class probabilities (ParametricExtrapolation);
    # "affine": one learned affine map per class (ClassGatedExtrapolation, sessions 4-6).
    forecast_prior: Literal["parametric", "affine"] = "parametric"
    # Parametric prior: Huber re-fits after the least-squares fit, so a few far-off frames of the
    # track (a sphere behind a distractor) do not pull the whole fit; 0 = least squares alone.
    forecast_prior_refits: int = Field(3, ge=0, le=10)
    # Train and evaluate with the conv weights and clips in channels_last_3d (NDHWC): about half
    # the CPU per step of the contiguous layout here (bench/RESULTS.md); same numbers to ~1e-6.
    channels_last: bool = True


class Profile(_Strict):
    """A named set of dataset and training settings."""

    name: str
    description: str = ""
    dataset: DatasetConfig = DatasetConfig()
    training: TrainingConfig = TrainingConfig()

    @model_validator(mode="after")
    def _track_needs_even_size(self) -> Profile:
        # The track readout's mask is at half resolution, mapped back through the camera.
        if self.training.track:
            for field in ("height", "width"):
                if getattr(self.dataset, field) % 2:
                    raise ValueError(
                        f"dataset.{field} must be even when training.track is on "
                        f"(got {getattr(self.dataset, field)}); set training.track: false or an even size"
                    )
        return self


class Encoder(StrEnum):
    I3D = "i3d"
    DUAL_PATHWAY = "dual_pathway"


class Enhancement(StrEnum):
    COMPRESSION = "compression"
    TEXT_ALIGNMENT = "text_alignment"
    NONE = "none"


class BranchConfig(_Strict):
    """One branch: video encoder x enhancement x describer backend."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    encoder: Encoder
    enhancement: Enhancement
    describer_backend: str = "analytic"  # "analytic", "openai:<model>" or "tgi:<model>"
    description: str = ""


class BranchesFile(_Strict):
    branches: list[BranchConfig]

    @model_validator(mode="after")
    def _unique(self) -> BranchesFile:
        names = [b.name for b in self.branches]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"branch names must be unique, repeated: {sorted(dup)}")
        return self


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a profile by name (``quick``, ``seed``) or from a YAML path."""
    p = Path(name_or_path)
    if not p.suffix:
        candidate = PROFILE_DIR / f"{name_or_path}.yaml"
        if not candidate.is_file():
            known = sorted(x.stem for x in PROFILE_DIR.glob("*.yaml"))
            raise ConfigError(f"profile: unknown profile {name_or_path!r}; known: {known}")
        p = candidate
    return validate_model(Profile, read_yaml(p), str(p))


def load_branches(path: str | Path | None = None) -> dict[str, BranchConfig]:
    """Load branch configs (default: the four seed branches), keyed by name."""
    p = Path(path) if path else BRANCHES_FILE
    parsed = validate_model(BranchesFile, read_yaml(p), str(p))
    return {b.name: b for b in parsed.branches}

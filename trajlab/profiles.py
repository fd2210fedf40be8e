"""Profiles (dataset + training settings) and branch configs, as validated YAML.

A profile is one YAML file in ``trajlab/configs/profiles/`` (``quick``, ``seed``)
or any path; the branches are ``trajlab/configs/branches.yaml``. Both are
validated at load with errors that name the bad field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

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
    # 1 = the training ranges of the motion (trajlab.data.trajectories). s > 1 draws every size and
    # speed of a motion (path length, radius, angle swept, drift, sag) from [hi, s * hi] of its
    # range instead of [lo, hi]: motions beyond the training range (the beyond_range stress set).
    # Left out of the config's dump at 1, so the manifests of existing datasets stay byte-identical.
    motion_range_scale: float = Field(1.0, ge=1.0, le=3.0)
    # The test split's sample ids start at samples + test_id_offset (0: right after train/val). A
    # stress set (trajlab.data.stress) renders few train/val clips and shifts its test ids onto the
    # profile's test split's, so its test clips are that split's twins. Left out of the dump at 0.
    test_id_offset: int = Field(0, ge=0, le=1_000_000)

    @model_serializer(mode="wrap")
    def _dump_without_defaults_added_later(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if self.motion_range_scale == 1.0:
            out.pop("motion_range_scale", None)
        if self.test_id_offset == 0:
            out.pop("test_id_offset", None)
        return out


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
    parity_clips: int = Field(32, ge=1, le=4096)  # validation clips checked ONNX vs PyTorch
    # Mirror half the training clips left-right (and negate the targets' x): exact, as the
    # camera's principal point is the image centre and no motion class depends on x's sign.
    augment_flip: bool = True
    # The track terms of the loss (mask, depth, points), with model.track on.
    track_weight: float = Field(1.0, ge=0.0)
    # With model.track_classifier: in training it also learns on the true observed positions
    # carrying another clip's track error, scaled to depth (a training input of the loss,
    # services.trainer.losses.track_classifier_noise), so it meets more noisy tracks.
    track_classifier_noise: bool = True
    # Train and evaluate with the conv weights and clips in channels_last_3d (NDHWC): about half
    # the CPU per step of the contiguous layout here (bench/RESULTS.md); same numbers to ~1e-6.
    channels_last: bool = True
    # 0: every epoch trains on the dataset's stored train split. N > 0: every epoch trains on N
    # clips newly rendered for it from the dataset's config (services/trainer/fresh_clips.py),
    # seeded by (dataset seed, training seed, epoch) in a stream apart from every train, val and
    # test sample; the validation and test splits stay as stored and are never trained on.
    # Left out of the config's dump at 0, so existing runs keep their fingerprints.
    fresh_clips_per_epoch: int = Field(0, ge=0, le=100_000)
    # With fresh clips: each chunk of an epoch's clips is rendered with its own camera jitter,
    # drawn uniformly between the dataset's and this (std, pixels), so the model meets shakier
    # cameras than the dataset's; 0 = the dataset's jitter. Left out of the dump at 0.
    augment_camera_jitter: float = Field(0.0, ge=0.0, le=4.0)

    @model_validator(mode="after")
    def _jitter_augmentation_needs_fresh_clips(self) -> TrainingConfig:
        if self.augment_camera_jitter > 0 and self.fresh_clips_per_epoch == 0:
            raise ValueError(
                "training.augment_camera_jitter needs training.fresh_clips_per_epoch > 0 "
                "(the shakier clips are rendered fresh; the stored train split is not re-rendered)"
            )
        return self

    @model_serializer(mode="wrap")
    def _dump_without_defaults_added_later(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        for name in ("fresh_clips_per_epoch", "augment_camera_jitter"):
            if not getattr(self, name):
                out.pop(name, None)
        return out


class ModelConfig(_Strict):
    """The branch model's settings. Every key is a field of the trainer's ``ModelArgs`` of the
    same name and meaning, stored as it is in checkpoints and exported metadata; the rest of
    ModelArgs comes from the branch (encoder, enhancement, its own encoder_args) and the dataset
    (frames, size, horizon, the camera's focal length, the sphere's radius)."""

    # Keyword arguments offered to every branch's encoder; each takes the ones its builder
    # declares (the seed encoders: channels, pool_grid; dual_pathway also alpha,
    # motion_channel_ratio). A branch's own encoder_args override them.
    encoder_args: dict[str, Any] = Field(default_factory=dict)
    feature_dim: int = Field(512, ge=8, le=8192)  # width of the branch's features (the heads' input)
    # "background_subtraction": frames, frames minus their temporal mean, u, v and value planes;
    # "none": raw frames.
    stem: Literal["background_subtraction", "none"] = "background_subtraction"
    # The object-track perception (services/trainer/perception): per-frame soft mask from the
    # encoder's taps -> 3D point through the dataset's camera, supervised by the observed
    # positions (training.track_weight). Off: the encoder alone. The knobs below need it on.
    track: bool = True
    # Each frame's depth corrected from the mask's peak brightness, area and mean brightness.
    depth_cues: bool = True
    # Class logits from the track's shape alone, added to the classify head's.
    track_classifier: bool = True
    # The track's spread along its 2nd and 3rd principal directions (over the 1st) among what the
    # summary and the track classifier read: flat (a circle) against not (a helix) at once.
    track_spreads: bool = True
    # The forecast head corrects a prior read off the track: "parametric" (each class's kind of
    # path fitted to the track) or "affine" (one learned affine map per class).
    forecast_prior: Literal["parametric", "affine"] = "parametric"
    # Parametric prior: Huber re-fits after the least-squares fit; 0 = least squares alone.
    prior_refits: int = Field(3, ge=0, le=10)
    # The largest camera shift per frame (whole pixels) read off the static background and
    # taken off the track; 0 = none. At least the renderer's margin, ceil(3 x camera_jitter).
    camera_shift: int = Field(0, ge=0, le=8)
    # Each frame's sphere fitted to its pixels by render and compare; the heads read the fit.
    sphere_fit: bool = False
    # Without the track perception only: a head reading each observed frame's 3D position off
    # the features, supervised by the true positions in training (training.track_weight), so the
    # encoder learns where the object is; the forecast prior (forecast_prior) reads that track.
    position_head: bool = False


class Profile(_Strict):
    """A named set of dataset, training and model settings."""

    name: str
    description: str = ""
    dataset: DatasetConfig = DatasetConfig()
    training: TrainingConfig = TrainingConfig()
    model: ModelConfig = ModelConfig()

    @model_validator(mode="after")
    def _track_needs_even_size(self) -> Profile:
        # The track readout's mask is at half resolution, mapped back through the camera.
        if self.model.track:
            for field in ("height", "width"):
                if getattr(self.dataset, field) % 2:
                    raise ValueError(
                        f"dataset.{field} must be even when model.track is on "
                        f"(got {getattr(self.dataset, field)}); set model.track: false or an even size"
                    )
        return self

    @model_validator(mode="after")
    def _camera_shift_covers_the_jitter(self) -> Profile:
        # The largest jitter the model trains on: the dataset's, or the augmentation's.
        jitter, field = self.dataset.camera_jitter, "dataset.camera_jitter"
        if self.training.augment_camera_jitter > jitter:
            jitter, field = self.training.augment_camera_jitter, "training.augment_camera_jitter"
        margin = math.ceil(3.0 * jitter)  # the renderer's largest shift
        if self.model.track and 0 < self.model.camera_shift < margin:
            raise ValueError(
                f"model.camera_shift must be 0 (leave the shift on the track) or at least {margin}, "
                f"the largest shift of {field} {jitter} "
                f"(ceil(3 x jitter) pixels); got {self.model.camera_shift}"
            )
        return self


@dataclasses.dataclass(frozen=True)
class KnownParts:
    """What a branch may name, as the trainer's registries have it. ``trajlab`` imports no
    service, so the service or CLI layer that loads the branches passes these in."""

    encoders: Collection[str]
    enhancements: Collection[str]
    # encoder -> the keyword arguments its builder takes (what a branch's encoder_args may set)
    encoder_args: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)


class BranchConfig(_Strict):
    """One branch: video encoder x enhancement x track perception x describer backend."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    encoder: str = Field(min_length=1)  # a registered encoder (`trajlab zoo` lists them)
    enhancement: str = Field(min_length=1)  # a registered enhancement: compression, text_alignment, none
    # The object-track perception on or off for this branch; unset = the profile's model.track.
    track: bool | None = None
    describer_backend: str = "analytic"  # "analytic", "openai:<model>" or "tgi:<model>"
    # The encoder builder's own keyword arguments, over the profile's model.encoder_args.
    encoder_args: dict[str, Any] = Field(default_factory=dict)
    # A local file of the encoder's initial weights (a torch state dict or .safetensors of the
    # encoder, or of the library network a standard backbone wraps), relative to the branches
    # file; never fetched. Unset = random initialisation.
    weights: Path | None = None
    description: str = ""


class BranchesFile(_Strict):
    branches: list[BranchConfig] = Field(min_length=1)

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


def load_branches(
    path: str | Path | None = None, *, known: KnownParts | None = None
) -> dict[str, BranchConfig]:
    """Load branch configs (default: the four seed branches), keyed by name.

    With ``known``, every branch's encoder, enhancement and encoder_args are checked against
    the registered names; errors name the file, the branch's field and the allowed names.
    A ``weights`` file is resolved against the branches file's folder and must exist.
    """
    p = Path(path) if path else BRANCHES_FILE
    parsed = validate_model(BranchesFile, read_yaml(p), str(p))
    out: dict[str, BranchConfig] = {}
    for i, b in enumerate(parsed.branches):
        where = f"{p}: branches[{i}] ({b.name})"
        if known is not None:
            _check_parts(b, known, where)
        if b.weights is not None:
            w = b.weights if b.weights.is_absolute() else (p.parent / b.weights).resolve()
            if not w.is_file():
                raise ConfigError(f"{where}.weights: no such file {w}")
            b = b.model_copy(update={"weights": w})
        out[b.name] = b
    return out


def _check_parts(b: BranchConfig, known: KnownParts, where: str) -> None:
    if b.encoder not in known.encoders:
        names = ", ".join(sorted(known.encoders))
        raise ConfigError(f"{where}.encoder: unknown {b.encoder!r}; registered: {names}")
    if b.enhancement not in known.enhancements:
        names = ", ".join(sorted(known.enhancements))
        raise ConfigError(f"{where}.enhancement: unknown {b.enhancement!r}; registered: {names}")
    allowed = known.encoder_args.get(b.encoder)
    unknown = sorted(set(b.encoder_args) - set(allowed)) if allowed is not None else []
    if "weights" in unknown:
        raise ConfigError(f"{where}.encoder_args.weights: a weights file is the branch's own `weights:` "
                          "field (relative to this file), not an encoder argument; move it there")
    if unknown:
        raise ConfigError(
            f"{where}.encoder_args: {b.encoder} takes {', '.join(sorted(allowed or [])) or 'none'}; "
            f"unknown {', '.join(unknown)}"
        )

"""A branch model: stem -> encoder -> [track perception] -> projection -> enhancement -> heads.

Every part is looked up by name in :mod:`services.trainer.registry` and built from
:class:`~services.trainer.model_args.ModelArgs`; the four seed branches of DESIGN.md are
thin presets over :func:`create_branch_model`.

Input everywhere: ``clip`` float32 (N, 3, T, H, W) from :func:`trajlab.preprocess.to_model_input`.
::

    clip (N, 3, T, H, W) -> stem (N, C, T, H, W)
      -> encoder -> VideoFeatures(pooled (N, P), taps)
      [-> perception(taps, stem) -> track, summary (N, S)]
      -> Linear(P [+ S] -> 512) -> LayerNorm = features (N, 512)
      -> enhancement -> head input, embedding -> heads: logits (N, K), forecast (N, horizon, 3)
      [+ track classifier's logits; forecast + the prior read off the track]
      [track off, position head: Linear(512 -> T x 3) = the observed positions; forecast + the prior
       read off them]
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

import services.trainer.encoders  # noqa: F401  (registers the encoders)
from services.trainer import enhancements as _enhancements  # noqa: F401  (registers them)
from services.trainer import forecast_priors as _priors  # noqa: F401  (registers them)
from services.trainer import heads as _heads  # noqa: F401  (registers them)
from services.trainer.encoders.weights import load_encoder_weights as load_weights_file
from services.trainer.enhancements import Enhanced
from services.trainer.model_args import ModelArgs
from services.trainer.perception import Track, TrackReadout, create_track_perception
from services.trainer.perception.motion import TrackShape
from services.trainer.perception.stem import create_stem
from services.trainer.perception.track_classifier import TrackClassifier
from services.trainer.registry import ENCODERS, ENHANCEMENTS, FORECAST_PRIORS, HEADS, Registry
from trajlab.profiles import KnownParts

HEAD = "classify_forecast"


class BranchOutput(NamedTuple):
    logits: torch.Tensor  # (N, K)
    forecast: torch.Tensor  # (N, horizon, 3), normalised by the dataset statistics
    embedding: torch.Tensor  # (N, D): what the model exports as its embedding
    features: torch.Tensor  # (N, 512) the branch's features (the encoder's, projected)
    reconstruction: torch.Tensor | None  # (N, 512), compression only
    text_logits: torch.Tensor | None  # (N, K), text alignment only
    track: Track | None = None  # the observed track, with the track perception only
    track_logits: torch.Tensor | None = None  # (N, K) the track classifier's share of ``logits``
    reversed_track_logits: torch.Tensor | None = None  # (N, K) on the time-reversed track; training only
    positions: torch.Tensor | None = None  # (N, T, 3) the position head's reading, normalised


class BranchModel(nn.Module):
    """Stem x encoder x perception x enhancement x heads; forecast statistics live in buffers so
    export can undo them. ``forward`` takes the clip only: what training alone knows (the true
    positions) goes to the loss."""

    def __init__(
        self,
        args: ModelArgs,
        *,
        stem: nn.Module,
        encoder: nn.Module,
        perception: TrackReadout | None,
        proj: nn.Linear,
        enhancement: nn.Module | None,
        heads: nn.ModuleDict,
        forecast_prior: nn.Module | None,
        track_classifier: TrackClassifier | None,
        position: nn.Linear | None = None,
        position_shape: TrackShape | None = None,
    ) -> None:
        super().__init__()
        self.args = args
        self.stem = stem
        self.encoder = encoder
        self.perception = perception
        self.proj = proj
        # Keeps the 512 features at unit scale whatever the grid size, so the heads'
        # first steps do not blow up the loss.
        self.norm = nn.LayerNorm(proj.out_features)
        self.enhancement = enhancement
        self.heads = heads
        # Forecast targets are (world - mean) / std per (step, axis); set from the
        # training split before training and saved with the weights.
        self.register_buffer("forecast_mean", torch.zeros(args.horizon, 3))
        self.register_buffer("forecast_std", torch.ones(args.horizon, 3))
        self.extrapolate = forecast_prior
        self.track_classifier = track_classifier
        # Track off: the observed positions read off the features, supervised in training
        # (losses.position_target); the forecast prior reads them, and the track classifier reads
        # their shape (position_shape) when there is one.
        self.position = position
        self.position_shape = position_shape

    def set_forecast_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.forecast_mean.copy_(mean.reshape(self.args.horizon, 3))
        self.forecast_std.copy_(std.reshape(self.args.horizon, 3).clamp_min(1e-6))

    def set_track_stats(self, observed: torch.Tensor) -> None:
        """Statistics of the training split's observed positions (N, T, 3) for the track perception."""
        if self.perception is not None:
            self.perception.set_stats(observed)
        if self.position_shape is not None:
            self.position_shape.set_stats(observed)

    def track_world(self, track: Track) -> torch.Tensor:
        """What the heads read of a track, in world units (N, T, 3): the fitted points when the
        sphere is fitted, else the readout's."""
        assert self.perception is not None
        return self.perception.to_world(track.points if track.fitted is None else track.fitted)

    def observed_world(self, out: BranchOutput) -> torch.Tensor | None:
        """The observed track (N, T, 3) in world units the prior and the track classifier read: the
        perception's, or without it the position head's; None for a model with neither."""
        return self._world(out.track, out.positions)

    def _world(self, track: Track | None, positions: torch.Tensor | None) -> torch.Tensor | None:
        if track is not None:
            return self.track_world(track)
        if positions is not None:
            return positions * self.forecast_std[0] + self.forecast_mean[0]
        return None

    def motion_features(self, world: torch.Tensor) -> torch.Tensor:
        """A world track (N, T, 3) -> what the track classifier reads of it."""
        shape = self.perception.shape if self.perception is not None else self.position_shape
        assert shape is not None
        return shape(world)

    def forward(self, clip: torch.Tensor) -> BranchOutput:
        stem = self.stem(clip)
        video = self.encoder(stem)
        pooled, track = video.pooled, None
        if self.perception is not None:
            track, summary = self.perception(video.taps, stem)
            pooled = torch.cat([pooled, summary], dim=1)
        features = self.norm(self.proj(pooled))
        if self.enhancement is None:
            enhanced = Enhanced(features, features)
        else:
            enhanced = self.enhancement.enhance(features)
        logits = self.heads["classify"](enhanced.head_in)
        forecast = self.heads["forecast"](enhanced.head_in).reshape(-1, self.args.horizon, 3)
        # The observed track in world units (observed_world) the track classifier reads and the
        # forecast prior extrapolates; the forecast head corrects the extrapolation.
        positions = None
        if self.position is not None:
            positions = self.position(features).reshape(-1, self.args.frames, 3)
        world = self._world(track, positions)
        track_logits = reversed_logits = None
        if world is not None and self.track_classifier is not None:
            shape = world.detach()
            # The perception's features of this track are in hand (its summary read them).
            motion = track.motion if track is not None else None
            if motion is None:
                motion = self.motion_features(shape)
            track_logits = self.track_classifier(motion.detach())
            logits = logits + track_logits
            if self.training:
                reversed_logits = self.track_classifier(self.motion_features(shape.flip(1)))
        if world is not None and self.extrapolate is not None:
            prior = self.extrapolate(world, torch.softmax(logits.detach(), dim=-1))  # (N, horizon, 3)
            forecast = forecast + (prior - self.forecast_mean) / self.forecast_std
        return BranchOutput(
            logits, forecast, enhanced.embedding, features, enhanced.reconstruction, enhanced.text_logits,
            track, track_logits, reversed_track_logits=reversed_logits, positions=positions,
        )

    def to_world(self, forecast_normalised: torch.Tensor) -> torch.Tensor:
        return forecast_normalised * self.forecast_std + self.forecast_mean

    @property
    def embedding_dim(self) -> int:
        if self.enhancement is not None:
            return int(self.enhancement.embedding_dim)
        return self.args.feature_dim


class ExportWrapper(nn.Module):
    """What goes into ONNX: clip -> (probabilities, forecast in world units, embedding
    [, track (N, T, 3) in world units, track_confidence (N, T)]).

    The track outputs (``trajlab.modelrepo.TRACK_OUTPUTS``) come with the track perception
    only: the track the heads read (:meth:`BranchModel.track_world`) and the readout's
    per-frame confidence (:meth:`TrackReadout.confidence`).
    """

    def __init__(self, model: BranchModel) -> None:
        super().__init__()
        self.model = model

    @property
    def has_track(self) -> bool:
        return self.model.perception is not None

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(clip)
        served = (torch.softmax(out.logits, dim=-1), self.model.to_world(out.forecast), out.embedding)
        if out.track is None:
            return served
        assert out.track.confidence is not None
        return (*served, self.model.track_world(out.track), out.track.confidence)


def build_part(registry: Registry[Any], name: str, available: dict[str, Any]) -> Any:
    """Build ``name`` from ``registry`` with the entries of ``available`` its builder declares.

    Builders take only their own keyword arguments; a branch offers what it knows and each
    part picks its own. An unknown name is a ValueError naming the field and the registered names.
    """
    entry = _entry(registry, name)
    params = inspect.signature(entry.builder).parameters
    return entry.builder(**{k: v for k, v in available.items() if k in params})


# What a branch gives every encoder builder; encoder_args are the builder's own keywords.
ENCODER_INPUTS = ("in_channels", "frames", "height", "width")


def encoder_arg_names(encoder: str) -> list[str]:
    """The keyword arguments of ``encoder``'s builder a branch may set in ``encoder_args``."""
    entry = _entry(ENCODERS, encoder)
    return sorted(n for n in inspect.signature(entry.builder).parameters if n not in ENCODER_INPUTS)


def encoder_args_for(encoder: str, offered: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The encoder_args a branch's model gets: the profile's ``offered`` ones its builder declares,
    then the branch's ``own`` (all of which it must declare)."""
    names = encoder_arg_names(encoder)
    unknown = sorted(set(own) - set(names))
    if unknown:
        raise ValueError(f"encoder_args: {encoder!r} takes {names}; unknown {unknown}")
    return {**{k: v for k, v in offered.items() if k in names}, **own}


def build_encoder(name: str, *, encoder_args: dict[str, Any], **inputs: Any) -> Any:
    """The registered encoder ``name`` on the branch's ``inputs`` (ENCODER_INPUTS) and its own args."""
    entry = _entry(ENCODERS, name)
    unknown = sorted(set(encoder_args) - set(encoder_arg_names(name)))
    if unknown:
        raise ValueError(f"encoder_args: {name!r} takes {encoder_arg_names(name)}; unknown {unknown}")
    return entry.builder(**inputs, **encoder_args)


def _entry(registry: Registry[Any], name: str) -> Any:
    try:
        return registry.get(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def create_branch_model(args: ModelArgs, *, class_text: torch.Tensor | None = None) -> BranchModel:
    """Build a branch model from its :class:`ModelArgs`.

    ``class_text`` (K, D) is required for the text-alignment enhancement (and may be
    a zero tensor of the right shape when the weights are about to be loaded from a
    checkpoint, whose buffer holds the real embeddings).
    """
    # The order parts are built in is the order their weights draw from torch's generator.
    stem, stem_channels = create_stem(
        kind=args.stem, in_channels=args.in_channels, height=args.height, width=args.width
    )
    size = dict(frames=args.frames, height=args.height, width=args.width)
    encoder = build_encoder(args.encoder, in_channels=stem_channels, **size, encoder_args=args.encoder_args)
    perception = None
    if args.track:
        perception = create_track_perception(
            taps=encoder.taps, **size, focal_px=args.focal_px, depth_cues=args.depth_cues,
            camera_shift=args.camera_shift, sphere_fit=args.sphere_fit, object_radius=args.object_radius,
            spreads=args.track_spreads,
        )
    extra = perception.out_features if perception is not None else 0
    proj = nn.Linear(encoder.out_dim + extra, args.feature_dim)
    needs_text = args.enhancement in ENHANCEMENTS and bool(
        ENHANCEMENTS.get(args.enhancement).info.get("needs_class_text")
    )
    if needs_text:
        if class_text is None:
            if args.text_dim <= 0:
                raise ValueError("text_alignment needs class_text (K, D) or text_dim > 0")
            class_text = torch.zeros(args.num_classes, args.text_dim)
        if class_text.shape[0] != args.num_classes:
            raise ValueError(f"class_text has {class_text.shape[0]} rows, expected {args.num_classes}")
    enhancement = build_part(
        ENHANCEMENTS, args.enhancement, dict(feature_dim=args.feature_dim, class_text=class_text)
    )
    head_dim = args.feature_dim if enhancement is None else enhancement.head_dim
    heads = build_part(HEADS, HEAD, dict(in_dim=head_dim, num_classes=args.num_classes, horizon=args.horizon))
    prior = classifier = None
    position = position_shape = None
    if args.position_head and not args.track:
        position = nn.Linear(args.feature_dim, args.frames * 3)
    if args.track or position is not None:
        # With a track the forecast head predicts a correction to a prior read straight off the
        # track, mixed by the class probabilities.
        prior = build_part(
            FORECAST_PRIORS, args.forecast_prior,
            dict(frames=args.frames, horizon=args.horizon, num_classes=args.num_classes,
                 prior_refits=args.prior_refits),
        )
        if args.track_classifier:
            if perception is not None:
                in_dim = perception.shape.dim
            else:
                position_shape = TrackShape(args.frames, spreads=args.track_spreads)
                in_dim = position_shape.dim
            classifier = TrackClassifier(in_dim=in_dim, num_classes=args.num_classes)
    return BranchModel(
        args, stem=stem, encoder=encoder, perception=perception, proj=proj, enhancement=enhancement,
        heads=heads, forecast_prior=prior, track_classifier=classifier, position=position,
        position_shape=position_shape,
    )


def known_parts() -> KnownParts:
    """The registered names a branches file may use (trajlab validates, the registries know)."""
    return KnownParts(
        encoders=ENCODERS.names(),
        enhancements=ENHANCEMENTS.names(),
        encoder_args={name: encoder_arg_names(name) for name in ENCODERS.names()},
    )


def load_encoder_weights(model: BranchModel, path: Path) -> None:
    """A branch's ``weights`` file (a state dict of its encoder, or of the library network the
    encoder wraps) into the model's encoder; see ``encoders/weights.py``.

    Raises ConfigError naming the field and the file when it cannot be read or does not fit.
    """
    load_weights_file(model.encoder, path, name=model.args.encoder)


# Thin presets: the four seed branches of DESIGN.md.
def _preset(encoder: str, enhancement: str, **kw: Any) -> ModelArgs:
    """ModelArgs of a seed branch at the seed clip size; ``kw`` are ModelArgs fields or the
    encoder's own arguments (``channels=(8, 16, 32)``)."""
    base: dict[str, Any] = dict(frames=16, height=64, width=64, horizon=4)
    fields = {f.name for f in dataclasses.fields(ModelArgs)}
    own = {k: kw.pop(k) for k in list(kw) if k not in fields}
    base.update(kw)
    return ModelArgs(encoder=encoder, enhancement=enhancement, **base,
                     encoder_args={**base.get("encoder_args", {}), **own})


def create_b1(**kw: Any) -> BranchModel:
    """b1: I3D-like encoder + feature compression."""
    return create_branch_model(_preset("i3d", "compression", **kw))


def create_b2(**kw: Any) -> BranchModel:
    """b2: dual-pathway encoder + feature compression."""
    return create_branch_model(_preset("dual_pathway", "compression", **kw))


def create_b3(*, class_text: torch.Tensor, **kw: Any) -> BranchModel:
    """b3: I3D-like encoder + CLIP-style text alignment."""
    args = _preset("i3d", "text_alignment", text_dim=int(class_text.shape[1]), **kw)
    return create_branch_model(args, class_text=class_text)


def create_b4(**kw: Any) -> BranchModel:
    """b4: dual-pathway encoder, no enhancement."""
    return create_branch_model(_preset("dual_pathway", "none", **kw))


PRESETS = {"b1": create_b1, "b2": create_b2, "b3": create_b3, "b4": create_b4}


def set_conv_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """Conv3d weights in channels_last_3d (NDHWC) or back to contiguous, in place; returns the model.

    On CPU, oneDNN's 3D convolutions in channels_last_3d take about half the CPU time of the
    contiguous layout for these models (bench/RESULTS.md). Only the 5-D conv weights change
    layout; values, state_dict and ONNX export are the same either way.
    """
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    for mod in model.modules():
        if isinstance(mod, nn.Conv3d):
            mod.to(memory_format=fmt)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

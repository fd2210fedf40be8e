"""What the zoo knows about each registered encoder: origin, size, cost, exportability, perception.

For every encoder in :data:`services.trainer.registry.ENCODERS`, built at a profile's
clip size: where it comes from, its parameters and FLOPs per clip (torch's own
``FlopCounterMode``: 2 FLOPs per multiply-add, convolutions and matmuls), whether the
encoder alone exports to ONNX with parity, and whether the object-track perception can
attach to its taps. ``trajlab zoo`` prints it; :func:`require_exportable` is the check a
branch's validation runs so an encoder that cannot be exported is refused before
training, with the reason.

The perception rule (:func:`perception_fit`): the track readout predicts a mask and
depth for *every frame* and reads the object's position from the mask's centroid, so it
needs a tap with ``temporal_stride == 1`` (one step per frame) and
``spatial_stride <= MAX_PERCEPTION_SPATIAL_STRIDE`` (cells no coarser than 4 px: on the
quick profile's 32 px frames an 8x8 grid or finer).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec, VideoEncoder
from services.trainer.registry import ENCODERS, Entry, Registry
from trajlab.errors import ConfigError

MAX_PERCEPTION_SPATIAL_STRIDE = 4
PARITY_ATOL = 1e-4  # the export gate's absolute tolerance (services.trainer.export.PARITY_TOLERANCE)
PARITY_RTOL = 1e-4  # plus a relative share: an encoder's raw features are not normalised like a head's
OPSET = 18
SEED_ENCODERS = ("i3d", "dual_pathway")  # the seed's own encoders, compared against in bench/bench_zoo.py


class InputSize(NamedTuple):
    """The encoder's input clip: (C, T, H, W) per clip."""

    in_channels: int
    frames: int
    height: int
    width: int

    def kwargs(self) -> dict[str, int]:
        return self._asdict()

    def __str__(self) -> str:
        return f"{self.in_channels}x{self.frames}x{self.height}x{self.width}"


class NotExportable(ConfigError):
    """A branch names an encoder that does not export to ONNX with parity at its clip size."""


@dataclasses.dataclass(frozen=True)
class Parity:
    ok: bool
    max_abs_diff: float | None  # None when the export or the run failed
    reason: str  # why not, or "" when ok


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    name: str
    origin: str
    source: str
    input_size: str
    params: int
    flops: int  # per clip, forward pass
    out_dim: int
    taps: dict[str, dict[str, int]]
    perception: bool
    perception_reason: str
    onnx_parity: bool | None  # None when not checked
    parity_detail: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_encoders() -> Registry[Any]:
    """Import every encoder package so the registry is full; returns it."""
    import services.trainer.encoders  # noqa: F401  (the seed's and the standard ones)

    return ENCODERS


def input_size_for(profile: Any, *, in_channels: int = 3) -> InputSize:
    """The clip size of a profile (``trajlab.profiles.Profile``) as the encoder sees it."""
    d = profile.dataset
    return InputSize(in_channels, d.frames, d.height, d.width)


def origin_of(entry: Entry[Any]) -> str:
    """Where an encoder comes from: its ``origin`` fact, else "seed" for trajlab's own."""
    if entry.info.get("origin"):
        return str(entry.info["origin"])
    return "seed" if entry.name in SEED_ENCODERS or entry.source.startswith("trajlab") else entry.source


def build(name: str, size: InputSize, encoder_args: Mapping[str, Any] | None = None,
          *, registry: Registry[Any] = ENCODERS) -> VideoEncoder:
    """Build ``name`` for clips of ``size`` with its own keyword arguments, in eval mode."""
    torch.manual_seed(0)
    enc = registry.build(name, **size.kwargs(), **dict(encoder_args or {}))
    if not isinstance(enc, VideoEncoder):
        raise TypeError(f"encoder {name}: builder returned {type(enc).__name__}, not a VideoEncoder")
    return enc.eval()


def example_clip(size: InputSize, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *size, generator=g)


def count_flops(enc: nn.Module, size: InputSize) -> int:
    """Forward FLOPs of one clip (torch.utils.flop_counter; conv and matmul, 2 per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        enc(example_clip(size))
    return int(counter.get_total_flops())


def perception_fit(taps: Mapping[str, TapSpec]) -> tuple[bool, str]:
    """Whether the track perception can attach, and which tap or why not (rule in the module doc)."""
    fit = [n for n, s in taps.items()
           if s.temporal_stride == 1 and s.spatial_stride <= MAX_PERCEPTION_SPATIAL_STRIDE]
    if fit:
        return True, f"tap {fit[0]} (every frame, stride {taps[fit[0]].spatial_stride} px)"
    if not taps:
        return False, "no taps"
    if not any(s.temporal_stride == 1 for s in taps.values()):
        finest_t = min(s.temporal_stride for s in taps.values())
        return False, f"no tap keeps every frame (finest temporal stride {finest_t})"
    finest = min(s.spatial_stride for s in taps.values() if s.temporal_stride == 1)
    return False, f"per-frame taps too coarse (spatial stride {finest} > {MAX_PERCEPTION_SPATIAL_STRIDE})"


class _Flat(nn.Module):
    """The encoder with a flat output tuple (pooled, then taps in order) for ONNX."""

    def __init__(self, enc: VideoEncoder) -> None:
        super().__init__()
        self.enc = enc

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.enc(clip)
        return (out.pooled, *(out.taps[n] for n in self.enc.taps))


def export_encoder(enc: VideoEncoder, path: Path, size: InputSize) -> Path:
    """Export ``enc`` alone (dynamo exporter, dynamic batch axis, one file)."""
    names = ["pooled", *(f"tap_{n}" for n in enc.taps)]
    # The exporter warns that torchvision's ops are not registered (none is used here) and
    # about deprecated pytree internals; neither says anything about this export.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(_Flat(enc).eval(), (example_clip(size, batch=2),), str(path), dynamo=True,
                          opset_version=OPSET, input_names=["clip"], output_names=names,
                          dynamic_shapes={"clip": {0: torch.export.Dim("batch", min=1, max=4096)}},
                          external_data=False, verbose=False)
    return path


def check_parity(enc: VideoEncoder, size: InputSize) -> Parity:
    """Export, run in onnxruntime at batch 1 and 3, compare every output with PyTorch."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="trajlab-zoo-") as tmp:
        path = Path(tmp) / "encoder.onnx"
        try:
            export_encoder(enc, path, size)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # the exporter's and ORT's errors vary; the message is the reason
            root = _root_cause(exc)
            return Parity(False, None, f"export failed: {type(root).__name__}: {_first_line(root)}")
        worst, excess = 0.0, 0.0
        for batch in (1, 3):
            clip = example_clip(size, batch=batch, seed=batch)
            with torch.no_grad():
                ref = [t.numpy() for t in _Flat(enc)(clip)]
            try:
                got = sess.run(None, {"clip": clip.numpy()})
            except Exception as exc:
                return Parity(False, None, f"onnxruntime failed at batch {batch}: {_first_line(exc)}")
            for r, g in zip(ref, got, strict=True):
                if r.shape != g.shape:
                    return Parity(False, None, f"output shape {g.shape} in ONNX != {r.shape} in PyTorch")
                diff = np.abs(r - g)
                worst = max(worst, float(diff.max()))
                excess = max(excess, float((diff - PARITY_ATOL - PARITY_RTOL * np.abs(r)).max()))
    if not np.isfinite(worst) or excess > 0:
        return Parity(False, worst, f"max abs difference {worst:.3g} beyond atol {PARITY_ATOL:g} + "
                                    f"rtol {PARITY_RTOL:g}")
    return Parity(True, worst, "")


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost cause: the exporter wraps the real reason (an op, a guard) in generic errors."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def describe(name: str, size: InputSize, *, parity: bool = True,
             encoder_args: Mapping[str, Any] | None = None, registry: Registry[Any] = ENCODERS) -> ZooEntry:
    """Everything the zoo says about one encoder at ``size``."""
    entry = registry.get(name)
    enc = build(name, size, encoder_args, registry=registry)
    fits, why = perception_fit(enc.taps)
    result = check_parity(enc, size) if parity else None
    if result is None:
        detail = "not checked"
    elif result.ok:
        detail = f"max abs diff {result.max_abs_diff:.2g}"
    else:
        detail = result.reason
    return ZooEntry(
        name=name, origin=origin_of(entry), source=entry.source, input_size=str(size),
        params=sum(p.numel() for p in enc.parameters()), flops=count_flops(enc, size),
        out_dim=int(enc.out_dim),
        taps={n: dataclasses.asdict(s) for n, s in enc.taps.items()},
        perception=fits, perception_reason=why,
        onnx_parity=None if result is None else result.ok, parity_detail=detail,
    )


def describe_all(size: InputSize, *, parity: bool = True, names: list[str] | None = None,
                 registry: Registry[Any] = ENCODERS) -> list[ZooEntry]:
    return [describe(n, size, parity=parity, registry=registry) for n in (names or registry.names())]


# require_exportable's verdicts for the zoo's own registry, per (name, size, encoder_args as JSON).
_PARITY_CACHE: dict[tuple[str, InputSize, str], Parity] = {}


def require_exportable(name: str, input_size: InputSize | tuple[int, int, int, int],
                       encoder_args: Mapping[str, Any] | None = None, *,
                       registry: Registry[Any] = ENCODERS) -> Parity:
    """Refuse (NotExportable, naming the encoder and why) an encoder that fails the ONNX parity gate.

    Branch validation calls this before training; results are cached per process for the
    same (name, size, arguments).
    """
    size = InputSize(*input_size)
    key = (name, size, json.dumps(dict(encoder_args or {}), sort_keys=True, default=str))
    try:
        result = _PARITY_CACHE.get(key) if registry is ENCODERS else None
        if result is None:
            result = check_parity(build(name, size, encoder_args, registry=registry), size)
        if registry is ENCODERS:
            _PARITY_CACHE[key] = result
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"encoder {name}: cannot be built with encoder_args {dict(encoder_args or {})} "
                          f"at clip size {size}: {exc}") from exc
    if not result.ok:
        raise NotExportable(f"encoder {name}: cannot be used in a branch - the ONNX export parity gate fails "
                            f"at clip size {size} ({result.reason}); the trained model could not be served")
    return result


def require_servable_encoder(args: Any) -> None:
    """Before a branch trains (``args``: its ModelArgs): refuse an encoder that cannot be exported.

    The seed's own encoders are exported by every run and covered by the tests, so only the
    others pay for the check (a build and an ONNX export of the bare encoder, seconds).
    """
    if args.encoder in SEED_ENCODERS:
        return
    from services.trainer.perception.stem import create_stem

    _, channels = create_stem(kind=args.stem, in_channels=args.in_channels,
                              height=args.height, width=args.width)
    require_exportable(args.encoder, (channels, args.frames, args.height, args.width), args.encoder_args)

"""onnxruntime sessions: explicit options, validation against metadata, warm-up.

A version is loaded in three steps before it may serve: (1) the sha256 of
model.onnx must equal ``metadata.model_sha256`` (a truncated or swapped file is
caught here, before onnxruntime parses it); (2) the session's input and outputs
must match the metadata's names and shapes, with a dynamic batch axis; (3) a
warm-up run at batch 1 and 2 on zeros must return finite outputs of the declared
shapes (onnxruntime allocates its arenas and picks kernels on the first runs, so
the first user request does not pay for them). Any failure raises
:class:`ModelLoadError` with a reason label for the load-failure metric.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from trajlab.modelrepo import (
    METADATA_FILE,
    MODEL_FILE,
    REQUIRED_OUTPUTS,
    ModelMetadata,
    read_metadata,
    sha256_file,
)

log = logging.getLogger(__name__)

# Output names every model has, in the order the encoder returns them (a model with a
# track returns metadata.output_names: these, then its track and track confidence).
OUTPUT_NAMES = REQUIRED_OUTPUTS


class ModelLoadError(Exception):
    """A version cannot serve. ``reason`` is a short label: corrupt, checksum, metadata, incompatible."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SessionConfig:
    """How every session is built (from EncoderSettings)."""

    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    intra_op_threads: int = 0  # 0 = CPUs available to this process
    warmup_runs: int = 2


def cpu_count() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says so)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def choose_providers(requested: tuple[str, ...]) -> list[str]:
    """Requested providers that this onnxruntime build has, CPU always last as the fallback."""
    available = set(ort.get_available_providers())
    chosen = [p for p in requested if p in available and p != "CPUExecutionProvider"]
    missing = [p for p in requested if p not in available]
    if missing:
        log.warning(
            "execution providers %s requested but not in this onnxruntime build (available: %s); "
            "falling back to %s",
            missing,
            sorted(available),
            [*chosen, "CPUExecutionProvider"],
        )
    return [*chosen, "CPUExecutionProvider"]


def session_options(cfg: SessionConfig) -> ort.SessionOptions:
    """SessionOptions with every knob that matters on a shared CPU set explicitly."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = cfg.intra_op_threads or cpu_count()
    # Requests are parallel at the gRPC level; one inter-op thread avoids a second pool.
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn whole cores while idle; on 2 shared cores that starves
    # the gRPC threads and the other services.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only; onnxruntime's warnings go to stderr otherwise
    return so


def _dim_ok(actual: Any, expected: int) -> bool:
    # A symbolic (str/None) dim is accepted here and checked on the warm-up outputs.
    return not isinstance(actual, int) or actual == expected


@dataclass
class LoadedSession:
    """A validated, warmed-up session of one version."""

    session: ort.InferenceSession
    metadata: ModelMetadata
    metadata_json: str
    sha256: str
    provider: str
    input_name: str
    load_seconds: float
    output_names: tuple[str, ...] = OUTPUT_NAMES  # what run() returns, in order


def _expected_output_shapes(meta: ModelMetadata) -> dict[str, tuple[int, ...]]:
    shapes = {
        "probabilities": (len(meta.class_names),),
        "forecast": (meta.forecast_horizon, 3),
        "embedding": (meta.embedding_dim,),
    }
    if meta.has_track:
        shapes |= {"track": (meta.input.frames, 3), "track_confidence": (meta.input.frames,)}
    return shapes


def _checked_metadata(version_dir: Path, root: Path | None) -> tuple[ModelMetadata, str]:
    """The version's metadata, checked against its directory, its model file's sha256 and the
    input contract; (metadata, the model's sha256)."""
    model_path = version_dir / MODEL_FILE
    if not (version_dir / METADATA_FILE).is_file():
        raise ModelLoadError("metadata", f"{version_dir} has no {METADATA_FILE}")
    if not model_path.is_file():
        raise ModelLoadError("corrupt", f"{version_dir} has no {MODEL_FILE}")
    try:
        meta = read_metadata(version_dir, root=root)
    except Exception as exc:  # InvalidArgument from the schema, OSError
        raise ModelLoadError("metadata", f"{version_dir / METADATA_FILE}: {exc}") from None
    if meta.version != int(version_dir.name) or meta.branch != version_dir.parent.name:
        raise ModelLoadError(
            "metadata",
            f"{version_dir}: metadata says branch {meta.branch!r} version {meta.version}, "
            f"the directory says branch {version_dir.parent.name!r} version {version_dir.name}",
        )
    digest = sha256_file(model_path)
    if digest != meta.model_sha256:
        raise ModelLoadError(
            "checksum",
            f"{model_path}: sha256 {digest[:12]}... does not match metadata.model_sha256 "
            f"{meta.model_sha256[:12]}... (file corrupt or replaced)",
        )
    inp = meta.input
    if inp.layout != "NCTHW":
        raise ModelLoadError("incompatible", f"input layout {inp.layout!r} is not supported (need NCTHW)")
    if len(inp.mean) != inp.channels or len(inp.std) != inp.channels or min(inp.std) <= 0:
        raise ModelLoadError(
            "metadata",
            f"input.mean/std need {inp.channels} values each and std > 0, got {inp.mean}/{inp.std}",
        )
    return meta, digest


def _check_io(sess: ort.InferenceSession, meta: ModelMetadata) -> dict[str, tuple[int, ...]]:
    """The session's input and outputs against the metadata; the outputs' expected shapes."""
    inp = meta.input
    want = (inp.channels, inp.frames, inp.height, inp.width)
    inputs = sess.get_inputs()
    if len(inputs) != 1 or inputs[0].name != inp.name:
        raise ModelLoadError(
            "incompatible", f"model inputs {[i.name for i in inputs]} != metadata input [{inp.name!r}]"
        )
    ishape = inputs[0].shape
    if len(ishape) != 5 or not all(_dim_ok(a, e) for a, e in zip(ishape[1:], want, strict=True)):
        raise ModelLoadError(
            "incompatible",
            f"model input {inp.name} has shape {ishape}, metadata says (N, {', '.join(map(str, want))})",
        )
    if isinstance(ishape[0], int):
        raise ModelLoadError(
            "incompatible",
            f"model input {inp.name} has a fixed batch axis ({ishape[0]}); "
            "export it with a dynamic batch axis",
        )
    if inputs[0].type != "tensor(float)":
        raise ModelLoadError(
            "incompatible", f"model input {inp.name} is {inputs[0].type}, need tensor(float)"
        )
    outs = {o.name: o.shape for o in sess.get_outputs()}
    expected = _expected_output_shapes(meta)
    for name, tail in expected.items():
        if name not in outs:
            raise ModelLoadError("incompatible", f"model has no output {name!r} (outputs: {sorted(outs)})")
        shape = outs[name]
        if len(shape) != 1 + len(tail) or not all(
            _dim_ok(a, e) for a, e in zip(shape[1:], tail, strict=True)
        ):
            raise ModelLoadError(
                "incompatible", f"output {name} has shape {shape}, metadata says (N, {tail})"
            )
    declared = {t.name for t in meta.outputs}
    if not set(OUTPUT_NAMES) <= declared:
        raise ModelLoadError("metadata", f"metadata.outputs {sorted(declared)} lacks one of {OUTPUT_NAMES}")
    return expected


def _warm_up(
    sess: ort.InferenceSession, meta: ModelMetadata, expected: dict[str, tuple[int, ...]], runs: int
) -> None:
    """Run zeros through the session; wrong shapes or non-finite outputs refuse the model."""
    inp = meta.input
    want = (inp.channels, inp.frames, inp.height, inp.width)
    # Warm up at batch 1 and 2: the second also proves the batch axis really is dynamic.
    for n in (1, 2):
        x = np.zeros((n, *want), dtype=np.float32)
        for _ in range(max(1, runs)):
            try:
                res = sess.run(list(meta.output_names), {inp.name: x})
            except Exception as exc:
                raise ModelLoadError("incompatible", f"warm-up run at batch {n} failed: {exc}") from None
        for name, arr in zip(meta.output_names, res, strict=True):
            if arr.shape != (n, *expected[name]):
                raise ModelLoadError(
                    "incompatible",
                    f"warm-up at batch {n}: output {name} has shape {arr.shape}, want {(n, *expected[name])}",
                )
            if not np.all(np.isfinite(arr)):
                raise ModelLoadError("incompatible", f"warm-up at batch {n}: output {name} is not finite")


def load_session(version_dir: Path, cfg: SessionConfig, *, root: Path | None = None) -> LoadedSession:
    """Load, validate and warm up one version directory; raise ModelLoadError if it cannot serve."""
    start = time.perf_counter()
    model_path = version_dir / MODEL_FILE
    meta, digest = _checked_metadata(version_dir, root)
    providers = choose_providers(cfg.providers)
    try:
        sess = ort.InferenceSession(str(model_path), sess_options=session_options(cfg), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf
        raise ModelLoadError("corrupt", f"onnxruntime cannot load {model_path}: {exc}") from None

    expected = _check_io(sess, meta)
    _warm_up(sess, meta, expected, cfg.warmup_runs)
    return LoadedSession(
        session=sess,
        metadata=meta,
        metadata_json=(version_dir / METADATA_FILE).read_text(),
        sha256=digest,
        provider=sess.get_providers()[0],
        input_name=meta.input.name,
        load_seconds=time.perf_counter() - start,
        output_names=meta.output_names,
    )

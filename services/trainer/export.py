"""ONNX export of a trained branch model, a parity gate against PyTorch, and publishing.

The exported graph is the contract the encoder serves:

- input ``clip``: float32 (N, C, T, H, W), from :func:`trajlab.preprocess.to_model_input`;
- outputs ``probabilities`` (N, K) softmax, ``forecast`` (N, horizon, 3) in WORLD units
  (the normalisation of the training targets is undone inside the graph), and
  ``embedding`` (N, D); a model with the track perception also ``track`` (N, T, 3) in world
  units and ``track_confidence`` (N, T) in [0, 1] (``trajlab.modelrepo.TRACK_OUTPUTS``);
- a dynamic batch axis, opset >= 17, one self-contained file.

Nothing is published unless onnxruntime reproduces PyTorch on validation clips to
within ``PARITY_TOLERANCE``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.trainer.branch import BranchModel, ExportWrapper
from trajlab.errors import FailedPrecondition
from trajlab.modelrepo import REQUIRED_OUTPUTS, TRACK_OUTPUTS

log = logging.getLogger(__name__)

INPUT_NAME = "clip"
OUTPUT_NAMES = REQUIRED_OUTPUTS  # every model's; output_names(model) adds the track's
OPSET = 18  # >= 17 as the contract asks; 18 is what the torch 2.13 dynamo exporter targets natively
PARITY_TOLERANCE = 1e-4  # max absolute difference, any output, any element


class ParityError(FailedPrecondition):
    """onnxruntime and PyTorch disagree beyond the tolerance: the model is not published."""


def output_names(model: BranchModel) -> tuple[str, ...]:
    """The ONNX outputs of ``model``, in order: the required three [+ the track's two]."""
    return OUTPUT_NAMES + (TRACK_OUTPUTS if model.perception is not None else ())


def export_onnx(model: BranchModel, path: Path, example: torch.Tensor, *, opset: int = OPSET) -> Path:
    """Export ``model`` (eval mode) to a single ONNX file with a dynamic batch axis."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model).eval()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(output_names(model)),
            dynamic_shapes={"clip": {0: torch.export.Dim("batch", min=1, max=4096)}},
            external_data=False,  # one file: the model repository copies model.onnx only
            verbose=False,
        )
    return path


def check_parity(
    model: BranchModel, onnx_path: Path, clips: np.ndarray, *, tolerance: float = PARITY_TOLERANCE
) -> float:
    """Max |onnxruntime - PyTorch| over every output (the track's too) for ``clips`` (N, C, T, H, W).

    Run at two batch sizes so the dynamic axis is exercised. Raises ParityError above
    ``tolerance``.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    expected = output_names(model)
    if tuple(names) != expected or [i.name for i in sess.get_inputs()] != [INPUT_NAME]:
        raise ParityError(f"exported model has inputs/outputs {names}, expected {list(expected)}")
    wrapper = ExportWrapper(model).eval()
    worst = 0.0
    for batch in (clips[:1], clips):
        with torch.no_grad():
            ref = [t.numpy() for t in wrapper(torch.from_numpy(np.ascontiguousarray(batch)))]
        got = sess.run(None, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        for name, r, g in zip(expected, ref, got, strict=True):
            if r.shape != g.shape:
                raise ParityError(f"output {name}: onnxruntime shape {g.shape} != PyTorch {r.shape}")
            worst = max(worst, float(np.abs(r - g).max()))
    if not np.isfinite(worst) or worst > tolerance:
        raise ParityError(f"ONNX parity check failed: max abs difference {worst:.3g} > {tolerance:g}")
    log.info("ONNX parity on %d validation clips: max abs difference %.3g", len(clips), worst)
    return worst


def output_specs(model: BranchModel) -> list[dict[str, Any]]:
    """metadata.json's ``outputs``: what the encoder checks and serves (``has_track`` from these)."""
    a = model.args
    specs = [
        {"name": "probabilities", "shape": ["batch", a.num_classes], "dtype": "float32"},
        {"name": "forecast", "shape": ["batch", a.horizon, 3], "dtype": "float32"},
        {"name": "embedding", "shape": ["batch", model.embedding_dim], "dtype": "float32"},
    ]
    if model.perception is not None:
        specs += [
            {"name": "track", "shape": ["batch", a.frames, 3], "dtype": "float32"},
            {"name": "track_confidence", "shape": ["batch", a.frames], "dtype": "float32"},
        ]
    return specs

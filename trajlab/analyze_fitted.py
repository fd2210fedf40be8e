"""Analyze a clip of any shape, length and frame rate with as few encoder calls as it needs.

The servers never adapt a clip; ``trajlab.clipadapt`` fits it to the model's input, which
needs the model's input shape and frame rate. Asking ListModels for them first costs a
round trip on every call, also for the common clip that already is the model's input. So
the clip is sent as it is first, with fps 0:

- the encoder refuses another shape (INVALID_ARGUMENT naming the expected one), and a clip
  too large for a message cannot be the model's input: then ListModels, fit, Analyze;
- an Analyze sent with fps 0 is timed at the model's own frame rate (forecast times are
  seconds from the clip's first frame, the first one ``frames / fps``), so its answer says
  the model's fps. When the clip's own fps is unknown or that one (within the wire's float32
  precision), the answer is the one the fitted clip gets, and it is used; otherwise the
  clip is resampled to the model's fps and sent again (a second Analyze, no ListModels).

The notes say what was done to the clip, worded by ``adapt_clip``. ``strict`` sends the
clip as it is, with its fps, once: a refusal is the answer. An INVALID_ARGUMENT that was
not about the shape (the clip fits as it is) is raised as it came. The price: a clip that
needs fitting makes the encoder answer, and count, one INVALID_ARGUMENT first.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from trajlab.clients.encoder import Analysis, EncoderClient
from trajlab.clipadapt import Target, adapt_clip, fits_as_is, target_of
from trajlab.errors import InvalidClip

FPS_REL_TOL = 1e-6  # Clip.fps is a float32 on the wire: rates this close are the same request


@dataclass(frozen=True)
class Fitted:
    """The answer, and the clip and fps that got it."""

    analysis: Analysis
    clip: np.ndarray  # the clip sent, in the model's input shape
    fps: float  # the frame rate the answer is timed at
    notes: list[str] = field(default_factory=list)  # what was done to the clip, in words
    analyze_ms: float = 0.0  # the Analyze whose answer this is
    calls: list[str] = field(default_factory=list)  # encoder methods called, in order


def model_fps_of(answer: Analysis, frames: int) -> float | None:
    """The model's fps read off an answer to a clip of ``frames`` frames sent with fps 0."""
    times = answer.forecast.times
    if len(times) == 0 or not times[0] > 0:
        return None
    fps = frames / float(times[0])
    return fps if math.isfinite(fps) else None


def _analyze(
    encoder: EncoderClient, clip: np.ndarray, fps: float, branch: str, version: int, timeout: float
) -> tuple[Analysis, float]:
    start = time.perf_counter()
    answer = encoder.analyze(clip, branch=branch, version=version, fps=fps, timeout=timeout)
    return answer, (time.perf_counter() - start) * 1e3


def analyze_fitted(
    encoder: EncoderClient,
    clip: np.ndarray,
    fps: float,
    *,
    branch: str,
    version: int = 0,
    strict: bool = False,
    timeout: float = 10.0,
    source: str = "clip",
) -> Fitted:
    """Analyze ``clip`` (T, H, W, C) uint8 at ``fps`` (0 = unknown), fitted to the model if needed.

    ``source`` names the clip in errors and notes. Raises ``grpc.RpcError`` with the encoder's
    status, and ``InvalidClip`` when the clip cannot be fitted (e.g. one frame).
    """
    if strict:
        answer, ms = _analyze(encoder, clip, fps, branch, version, timeout)
        return Fitted(answer, clip, fps, [], ms, ["Analyze"])
    refused: grpc.RpcError | None = None
    try:
        answer, ms = _analyze(encoder, clip, 0.0, branch, version, timeout)
    except InvalidClip:  # too large to send, so not the model's input
        pass
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        refused = exc
    else:
        model_fps = model_fps_of(answer, clip.shape[0])
        if model_fps is not None:
            target = Target(*clip.shape, fps=model_fps)
            adapted = adapt_clip(clip, fps, target, source=source)
            if fps <= 0 or math.isclose(fps, model_fps, rel_tol=FPS_REL_TOL):
                return Fitted(answer, clip, model_fps, adapted.notes, ms, ["Analyze"])
            # Another frame rate: the same model (its version now known) takes the fitted clip.
            pinned = answer.classification.version
            again, ms = _analyze(encoder, adapted.clip, adapted.fps, branch, pinned, timeout)
            return Fitted(again, adapted.clip, adapted.fps, adapted.notes, ms, ["Analyze", "Analyze"])
    calls = ["Analyze", "ListModels"]
    info = encoder.model_info(branch, version, timeout=timeout)
    target = target_of(info.input_shape, info.metadata.get("fps") or 0.0)
    if refused is not None and fits_as_is(clip.shape, fps, target):
        raise refused  # refused for another reason than its shape
    adapted = adapt_clip(clip, fps, target, source=source)
    answer, ms = _analyze(encoder, adapted.clip, adapted.fps, branch, info.version, timeout)
    return Fitted(answer, adapted.clip, adapted.fps, adapted.notes, ms, [*calls, "Analyze"])

"""The encoder's domain: clip in, class probabilities, forecast and embedding out.

Clips must have exactly the shape the model was trained on: a clip of another
size is refused (INVALID_ARGUMENT) with the expected shape in the message. We
chose refusing over resizing because a silent resize changes what the model
sees (aspect, object size, motion per pixel) and so its answers; a caller who
wants a resize does it knowingly before sending. ListModels tells the expected
shape of every loaded version.
Preprocessing is ``trajlab.preprocess.to_model_input`` with the mean/std from
the model's metadata: the very function the trainer used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.encoder.repository import ModelStore
from trajlab.errors import InvalidClip
from trajlab.preprocess import to_model_input


@dataclass(frozen=True)
class Analysis:
    """The model's answer for one clip."""

    branch: str
    version: int
    class_names: tuple[str, ...]
    probabilities: np.ndarray  # (K,) float32, sums to 1
    forecast: np.ndarray  # (horizon, 3) float32, world units, nearest frame first
    times: np.ndarray  # (horizon,) float64, seconds from the clip's first frame
    embedding: np.ndarray  # (D,) float32
    # The model's own estimate of the object in each observed frame (models with a track only):
    track: np.ndarray | None = None  # (T, 3) float32, world units
    track_confidence: np.ndarray | None = None  # (T,) float32 in [0, 1]
    track_times: np.ndarray | None = None  # (T,) float64, seconds from the clip's first frame

    @property
    def top_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def class_name(self) -> str:
        return self.class_names[self.top_index]


class Encoder:
    """Runs clips through the served models of a :class:`ModelStore`."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def analyze(
        self,
        branch: str,
        version: int,
        clip: np.ndarray,
        *,
        fps: float = 0.0,
        deadline: float | None = None,
        is_active: Callable[[], bool] | None = None,
    ) -> Analysis:
        """Analyze one (T, H, W, C) uint8 clip with branch/version (0 = newest).

        ``deadline`` is a ``time.monotonic()`` instant (None = no deadline); ``fps``
        (0 = the model's training fps) converts forecast frame indices to seconds.
        """
        with self.store.lease(branch, version) as model:
            expected = model.input_shape
            if tuple(clip.shape) != expected:
                t, h, w, c = clip.shape
                et, eh, ew, ec = expected
                raise InvalidClip(
                    f"model {model.branch} v{model.version} expects clips of frames={et} height={eh} "
                    f"width={ew} channels={ec}, got frames={t} height={h} width={w} channels={c} "
                    "(clips are not resized by the server)"
                )
            meta = model.metadata
            x = to_model_input(clip, meta.input.mean, meta.input.std)
            outs = model.run(x, deadline=deadline, is_active=is_active)
            probs, forecast, embedding = outs[:3]
            rate = fps if fps > 0 else meta.fps
            frames = clip.shape[0]
            times = (frames + np.arange(meta.forecast_horizon, dtype=np.float64)) / rate
            track = {}
            if len(outs) == 5:  # metadata.output_names: the track and its confidence follow
                track = dict(
                    track=outs[3][0],
                    track_confidence=outs[4][0],
                    track_times=np.arange(frames, dtype=np.float64) / rate,
                )
            return Analysis(
                branch=model.branch,
                version=model.version,
                class_names=tuple(meta.class_names),
                probabilities=probs[0],
                forecast=forecast[0],
                times=times,
                embedding=embedding[0],
                **track,
            )


def deadline_from_remaining(remaining_seconds: float | None) -> float | None:
    """gRPC's ``time_remaining()`` (None = no deadline) -> a ``time.monotonic()`` instant."""
    return None if remaining_seconds is None else time.monotonic() + remaining_seconds

"""Typed client of the encoder service.

>>> with EncoderClient("127.0.0.1:50051") as enc:
...     c = enc.classify(clip, branch="b1")   # clip: (T, H, W, C) uint8
...     c.class_name, c.probabilities["circular"]

Every call has a deadline (``timeout`` seconds, per client or per call). All
encoder methods are read-only, so every one is retried on UNAVAILABLE by gRPC's
service config (a server still loading its first model answers UNAVAILABLE).
Failures raise ``grpc.RpcError`` with the server's status code and message; a
clip too large for the channel is refused locally with ``InvalidClip`` before
anything is sent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trajlab.clients._channel import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    connect_now,
    open_channel,
)
from trajlab.codec import array_to_clip
from trajlab.common.v1 import common_pb2
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.errors import InvalidClip

SERVICE = "trajlab.encoder.v1.EncoderService"
# Bytes a request needs beyond the pixels (model ref, shape fields, framing).
_ENVELOPE_BYTES = 1024


@dataclass(frozen=True)
class Classification:
    branch: str
    version: int
    class_name: str
    probabilities: dict[str, float]  # class name -> probability, in the model's class order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Forecast:
    branch: str
    version: int
    positions: np.ndarray  # (horizon, 3) float64, world units, nearest frame first
    times: np.ndarray  # (horizon,) float64, seconds from the clip's first frame

    def to_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "version": self.version,
            "positions": self.positions.tolist(),
            "times": self.times.tolist(),
        }


@dataclass(frozen=True)
class Analysis:
    classification: Classification
    forecast: Forecast
    embedding: np.ndarray  # (D,) float32
    # The model's own observed track; None when the model has none (ModelInfo.has_track).
    track: np.ndarray | None = None  # (T, 3) world units
    track_confidence: np.ndarray | None = None  # (T,) in [0, 1]
    track_times: np.ndarray | None = None  # (T,) seconds from the clip's first frame

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.classification.to_dict(),
            "positions": self.forecast.positions.tolist(),
            "times": self.forecast.times.tolist(),
            "embedding": self.embedding.tolist(),
            "track": None if self.track is None else self.track.tolist(),
            "track_confidence": None if self.track_confidence is None else self.track_confidence.tolist(),
            "track_times": None if self.track_times is None else self.track_times.tolist(),
        }


@dataclass(frozen=True)
class ModelInfo:
    branch: str
    version: int
    is_default: bool
    input_shape: tuple[int, ...]  # frames, height, width, channels
    class_names: tuple[str, ...]
    forecast_horizon: int
    embedding_dim: int
    execution_provider: str
    sha256: str
    loaded_at: str
    metadata: dict[str, Any] = field(repr=False)
    has_track: bool = False  # Analyze returns the model's own observed track

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _classification(resp: Any) -> Classification:
    return Classification(
        branch=resp.model.branch,
        version=int(resp.model.version),
        class_name=resp.class_name,
        probabilities={n: float(p) for n, p in zip(resp.class_names, resp.probabilities, strict=True)},
    )


def _forecast(resp: Any) -> Forecast:
    return Forecast(
        branch=resp.model.branch,
        version=int(resp.model.version),
        positions=np.array([[p.x, p.y, p.z] for p in resp.positions], dtype=np.float64).reshape(-1, 3),
        times=np.array(resp.times, dtype=np.float64),
    )


class EncoderClient:
    """Classify, Forecast, Analyze and ListModels against one encoder server."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retries: bool = True,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._channel = open_channel(
            target, max_message_bytes=max_message_bytes, idempotent=[(SERVICE, None)], retries=retries
        )
        self._stub = encoder_pb2_grpc.EncoderServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def connect(self) -> None:
        """Start connecting now, without waiting (the first call would otherwise)."""
        connect_now(self._channel)

    def __enter__(self) -> EncoderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------

    def _clip(self, clip: np.ndarray | common_pb2.Clip, fps: float) -> common_pb2.Clip:
        msg = clip if isinstance(clip, common_pb2.Clip) else array_to_clip(clip, fps)
        if len(msg.pixels) + _ENVELOPE_BYTES > self.max_message_bytes:
            raise InvalidClip(
                f"clip of {len(msg.pixels)} bytes (frames={msg.frames} height={msg.height} width={msg.width} "
                f"channels={msg.channels}) exceeds the max message size of {self.max_message_bytes} bytes"
            )
        return msg

    @staticmethod
    def _ref(branch: str, version: int) -> common_pb2.ModelRef:
        return common_pb2.ModelRef(branch=branch, version=version)

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    # -- RPCs ------------------------------------------------------------------------------

    def classify(
        self,
        clip: np.ndarray | common_pb2.Clip,
        *,
        branch: str,
        version: int = 0,
        fps: float = 0.0,
        timeout: float | None = None,
    ) -> Classification:
        """Class probabilities of one (T, H, W, C) uint8 clip; version 0 = the newest loaded."""
        req = encoder_pb2.ClassifyRequest(model=self._ref(branch, version), clip=self._clip(clip, fps))
        return _classification(self._stub.Classify(req, timeout=self._timeout(timeout)))

    def forecast(
        self,
        clip: np.ndarray | common_pb2.Clip,
        *,
        branch: str,
        version: int = 0,
        fps: float = 0.0,
        timeout: float | None = None,
    ) -> Forecast:
        """The next frames' 3D positions (world units) after one clip."""
        req = encoder_pb2.ForecastRequest(model=self._ref(branch, version), clip=self._clip(clip, fps))
        return _forecast(self._stub.Forecast(req, timeout=self._timeout(timeout)))

    def analyze(
        self,
        clip: np.ndarray | common_pb2.Clip,
        *,
        branch: str,
        version: int = 0,
        fps: float = 0.0,
        timeout: float | None = None,
    ) -> Analysis:
        """Class probabilities, forecast and embedding of one clip in one call."""
        req = encoder_pb2.AnalyzeRequest(model=self._ref(branch, version), clip=self._clip(clip, fps))
        resp = self._stub.Analyze(req, timeout=self._timeout(timeout))
        track = {}
        if len(resp.observed_track):
            track = dict(
                track=np.array([[p.x, p.y, p.z] for p in resp.observed_track], dtype=np.float32),
                track_confidence=np.array(resp.track_confidence, dtype=np.float32),
                track_times=np.array(resp.track_times, dtype=np.float64),
            )
        return Analysis(
            classification=_classification(resp),
            forecast=_forecast(resp),
            embedding=np.array(resp.embedding, dtype=np.float32),
            **track,
        )

    def list_models(self, branch: str = "", *, timeout: float | None = None) -> list[ModelInfo]:
        """Loaded versions (all branches, or one), with which is each branch's default."""
        resp = self._stub.ListModels(
            encoder_pb2.ListModelsRequest(branch=branch), timeout=self._timeout(timeout)
        )
        return [
            ModelInfo(
                branch=m.model.branch,
                version=int(m.model.version),
                is_default=m.is_default,
                input_shape=tuple(int(s) for s in m.input_shape),
                class_names=tuple(m.class_names),
                forecast_horizon=int(m.forecast_horizon),
                embedding_dim=int(m.embedding_dim),
                execution_provider=m.execution_provider,
                sha256=m.sha256,
                loaded_at=m.loaded_at,
                metadata=json.loads(m.metadata_json) if m.metadata_json else {},
                has_track=m.has_track,
            )
            for m in resp.models
        ]

    def model_info(self, branch: str, version: int = 0, *, timeout: float | None = None) -> ModelInfo:
        """The loaded model that a request for ``branch``/``version`` (0 = default) would use."""
        from trajlab.errors import NotFound

        # The server lists the run the name addresses (a plain branch name: its default seed run).
        infos = self.list_models(branch, timeout=timeout)
        chosen = [m for m in infos if (m.version == version if version else m.is_default)]
        if not chosen:
            wanted = f"version {version}" if version else "default version"
            raise NotFound(f"the encoder serves no {wanted} of branch {branch[:80]!r}")
        return chosen[0]

    def wait_until_serving(self, timeout: float = 30.0, poll_seconds: float = 0.2) -> None:
        """Block until the server's health says SERVING (a model is loaded); TimeoutError otherwise."""
        from trajlab.clients.health import wait_until_serving

        wait_until_serving(
            self._channel,
            what=f"encoder at {self.target}",
            service=SERVICE,
            timeout=timeout,
            poll_seconds=poll_seconds,
            check_timeout=poll_seconds * 5,
        )

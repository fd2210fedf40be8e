"""gRPC servicer: protobuf <-> the encoder's domain, nothing else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import grpc

from services.encoder import metrics
from services.encoder.engine import Analysis, Encoder, deadline_from_remaining
from trajlab.codec import clip_to_array
from trajlab.common.v1 import common_pb2
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.errors import TrajlabError
from trajlab.profiles import CLASS_NAMES

SERVICE_NAME = encoder_pb2.DESCRIPTOR.services_by_name["EncoderService"].full_name


def _motion_class(name: str) -> int:
    # MotionClass enum value = index in CLASS_NAMES + 1; 0 (UNSPECIFIED) for a name outside it.
    return CLASS_NAMES.index(name) + 1 if name in CLASS_NAMES else 0


def _points(points) -> list[common_pb2.Point3]:  # type: ignore[no-untyped-def]
    """(N, 3) world units -> Point3 messages; None (no track) -> none."""
    if points is None:
        return []
    return [common_pb2.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in points]


class EncoderServicer(encoder_pb2_grpc.EncoderServiceServicer):
    """Classify, Forecast, Analyze and ListModels over an injected :class:`Encoder`."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder

    @contextlib.contextmanager
    def _observed(self, method: str, branch: str) -> Iterator[None]:
        # Label only branches that are loaded, so a client cannot grow the label set at will.
        label = branch if self._encoder.store.is_loaded(branch) else "unknown"
        start = time.perf_counter()
        code = "OK"
        try:
            yield
        except TrajlabError as exc:
            code = exc.code.name
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL.name
            raise
        finally:
            metrics.REQUESTS.labels(method, label, code).inc()
            if code == "OK":
                metrics.REQUEST_SECONDS.labels(method, label).observe(time.perf_counter() - start)

    def _analyze(self, request, context: grpc.ServicerContext) -> Analysis:  # type: ignore[no-untyped-def]
        clip = clip_to_array(request.clip)
        return self._encoder.analyze(
            request.model.branch,
            request.model.version,
            clip,
            fps=float(request.clip.fps),
            deadline=deadline_from_remaining(context.time_remaining()),
            is_active=context.is_active,
        )

    def Classify(
        self, request: encoder_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> encoder_pb2.ClassifyResponse:
        with self._observed("Classify", request.model.branch):
            a = self._analyze(request, context)
            return encoder_pb2.ClassifyResponse(
                model=common_pb2.ModelRef(branch=a.branch, version=a.version),
                motion_class=_motion_class(a.class_name),  # type: ignore[arg-type]
                class_name=a.class_name,
                probabilities=[float(p) for p in a.probabilities],
                class_names=list(a.class_names),
            )

    def Forecast(
        self, request: encoder_pb2.ForecastRequest, context: grpc.ServicerContext
    ) -> encoder_pb2.ForecastResponse:
        with self._observed("Forecast", request.model.branch):
            a = self._analyze(request, context)
            return encoder_pb2.ForecastResponse(
                model=common_pb2.ModelRef(branch=a.branch, version=a.version),
                positions=_points(a.forecast),
                times=[float(t) for t in a.times],
            )

    def Analyze(
        self, request: encoder_pb2.AnalyzeRequest, context: grpc.ServicerContext
    ) -> encoder_pb2.AnalyzeResponse:
        with self._observed("Analyze", request.model.branch):
            a = self._analyze(request, context)
            return encoder_pb2.AnalyzeResponse(
                model=common_pb2.ModelRef(branch=a.branch, version=a.version),
                motion_class=_motion_class(a.class_name),  # type: ignore[arg-type]
                class_name=a.class_name,
                probabilities=[float(p) for p in a.probabilities],
                class_names=list(a.class_names),
                positions=_points(a.forecast),
                times=[float(t) for t in a.times],
                embedding=a.embedding.astype(float).tolist(),
                observed_track=_points(a.track),
                track_confidence=[] if a.track_confidence is None else a.track_confidence.tolist(),
                track_times=[] if a.track_times is None else a.track_times.tolist(),
            )

    def ListModels(
        self, request: encoder_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> encoder_pb2.ListModelsResponse:
        with self._observed("ListModels", request.branch):
            out = []
            for m, is_default in self._encoder.store.models(request.branch):
                meta = m.metadata
                out.append(
                    encoder_pb2.ModelInfo(
                        model=common_pb2.ModelRef(branch=m.branch, version=m.version),
                        is_default=is_default,
                        input_shape=list(m.input_shape),
                        class_names=list(meta.class_names),
                        forecast_horizon=meta.forecast_horizon,
                        embedding_dim=meta.embedding_dim,
                        execution_provider=m.provider,
                        sha256=m.sha256,
                        metadata_json=m.metadata_json,
                        loaded_at=m.loaded_at,
                        has_track=meta.has_track,
                    )
                )
            return encoder_pb2.ListModelsResponse(models=out)

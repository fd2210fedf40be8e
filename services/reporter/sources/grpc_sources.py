"""gRPC sources of the report: the trainers, the encoder and the describer.

Each source turns RPC failures into a reason a reader understands ("trainer b2 at
127.0.0.1:50052 unreachable: ..."), so the report can show what is missing and why.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from services.reporter.metrics import compute_metrics
from services.reporter.model import (
    Missing,
    SampleDescription,
    ServedEvaluation,
    ValidationSet,
)
from trajlab.clients._channel import ClientTls, lb_policy_from_env
from trajlab.codec import array_to_clip
from trajlab.common.v1 import common_pb2
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.explain import MIN_POINTS
from trajlab.runs import split_ablation, split_run_name
from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

STATE_NAMES = {
    trainer_pb2.TRAINING_STATE_UNSPECIFIED: "unknown",
    trainer_pb2.TRAINING_STATE_IDLE: "idle",
    trainer_pb2.TRAINING_STATE_TRAINING: "training",
    trainer_pb2.TRAINING_STATE_EVALUATING: "evaluating",
    trainer_pb2.TRAINING_STATE_EXPORTING: "exporting",
    trainer_pb2.TRAINING_STATE_DONE: "done",
    trainer_pb2.TRAINING_STATE_FAILED: "failed",
}


def rpc_reason(exc: grpc.RpcError) -> str:
    """``CODE: details`` of a failed call, for the report."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if isinstance(code, grpc.StatusCode) else "ERROR"
    return f"{name}: {details}"


def open_channel(target: str) -> grpc.Channel:
    # TLS when TRAJLAB_TLS_* names certificates (see trajlab.clients._channel), else plaintext.
    # Round robin over every address of the target (encoder replicas), as trajlab's clients.
    opts = [*_CHANNEL_OPTIONS, ("grpc.lb_policy_name", lb_policy_from_env())]
    tls = ClientTls.from_env()
    if tls is None:
        return grpc.insecure_channel(target, options=opts)
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, tls.credentials(), options=opts)


@dataclass
class TrainerFetch:
    """What one trainer gave, and what it could not give."""

    status: trainer_pb2.TrainingStatus | None = None
    history: list[trainer_pb2.EpochMetrics] | None = None
    results: trainer_pb2.EvaluationResults | None = None
    missing: list[Missing] = field(default_factory=list)
    reachable: bool = True
    history_source: str = "trainer GetHistory"  # where the history came from, for the curves table


class TrainerSource:
    """One branch's trainer: status, per-epoch history and evaluation results."""

    live = True  # the report trigger waits for it to finish

    def __init__(self, branch: str, target: str, *, timeout_seconds: float = 10.0) -> None:
        self.branch = branch
        self.target = target
        self.timeout = timeout_seconds

    def status(self) -> trainer_pb2.TrainingStatus:
        with open_channel(self.target) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            return stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=self.timeout).status

    def fetch(self) -> TrainerFetch:
        out = TrainerFetch()
        b = self.branch
        with open_channel(self.target) as ch:
            stub = trainer_pb2_grpc.TrainerServiceStub(ch)
            try:
                out.status = stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=self.timeout).status
            except grpc.RpcError as exc:
                out.reachable = False
                out.missing.append(
                    Missing("trainer", f"trainer at {self.target} unreachable ({rpc_reason(exc)})", b)
                )
                return out
            try:
                out.history = list(
                    stub.GetHistory(trainer_pb2.GetHistoryRequest(), timeout=self.timeout).epochs
                )
            except grpc.RpcError as exc:
                out.missing.append(Missing("training history", f"GetHistory failed ({rpc_reason(exc)})", b))
            st = out.status
            if st.state == trainer_pb2.TRAINING_STATE_FAILED:
                out.missing.append(
                    Missing("results", f"branch failed: {st.error or 'no error message given'}", b)
                )
                return out
            try:
                out.results = stub.GetResults(trainer_pb2.GetResultsRequest(), timeout=self.timeout).results
            except grpc.RpcError as exc:
                state = STATE_NAMES.get(st.state, str(st.state))
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    reason = f"no results yet: trainer is {state} (epoch {st.epoch}/{st.total_epochs})"
                else:
                    reason = f"GetResults failed ({rpc_reason(exc)})"
                out.missing.append(Missing("results", reason, b))
        return out


class EncoderSource:
    """The served ONNX models: the validation clips go through Analyze, as a user's would."""

    def __init__(self, target: str, *, timeout_seconds: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout_seconds

    def list_models(self) -> list[encoder_pb2.ModelInfo]:
        with open_channel(self.target) as ch:
            stub = encoder_pb2_grpc.EncoderServiceStub(ch)
            return list(stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=self.timeout).models)

    def evaluate(
        self,
        branch: str,
        validation: ValidationSet,
        indices: np.ndarray,
        *,
        version: int = 0,
    ) -> ServedEvaluation:
        """Analyze each chosen clip with the branch's served model and score the answers.

        Raises grpc.RpcError on the first failed call: a partial evaluation would be a
        different sample than the trainer's and is not reported.
        """
        names = {n: i for i, n in enumerate(validation.class_names)}
        preds: list[int] = []
        forecasts: list[np.ndarray] = []
        latency_ms: list[float] = []
        times: np.ndarray | None = None
        tracks: list[np.ndarray] = []  # the model's own observed track, empty without one
        confidences: list[np.ndarray] = []
        served_version = 0
        with open_channel(self.target) as ch:
            stub = encoder_pb2_grpc.EncoderServiceStub(ch)
            ref = common_pb2.ModelRef(branch=branch, version=version)
            for i in indices:
                clip = array_to_clip(validation.clips[int(i)], fps=validation.fps)
                t0 = time.perf_counter()
                resp = stub.Analyze(encoder_pb2.AnalyzeRequest(model=ref, clip=clip), timeout=self.timeout)
                latency_ms.append((time.perf_counter() - t0) * 1000.0)
                served_version = resp.model.version
                if resp.class_name not in names:
                    raise ValueError(f"encoder answered unknown class {resp.class_name!r} for {branch}")
                preds.append(names[resp.class_name])
                forecasts.append(np.array([[p.x, p.y, p.z] for p in resp.positions], dtype=np.float32))
                tracks.append(np.array([[p.x, p.y, p.z] for p in resp.observed_track], dtype=np.float32))
                confidences.append(np.asarray(resp.track_confidence, dtype=np.float32))
                if times is None:
                    times = np.asarray(resp.times, dtype=np.float64)
        pred_arr = np.asarray(preds, dtype=np.int64)
        fc = np.stack(forecasts)
        idx = np.asarray(indices, dtype=np.int64)
        truth = validation.positions[idx, validation.frames :]
        if fc.shape != truth.shape:
            raise ValueError(
                f"encoder forecast shape {fc.shape[1:]} differs from the validation horizon {truth.shape[1:]}"
            )
        metrics = compute_metrics(
            labels=validation.labels[idx],
            predictions=pred_arr,
            truth=truth,
            forecast=fc,
            extent=validation.extent[idx],
            num_classes=len(validation.class_names),
        )
        with_track = bool(tracks) and all(len(t) == validation.frames for t in tracks)
        return ServedEvaluation(
            metrics=metrics,
            model_version=int(served_version),
            predictions=pred_arr,
            forecasts=fc,
            forecast_times=times if times is not None else np.zeros(0),
            indices=idx,
            client_latency_ms=latency_ms,
            tracks=np.stack(tracks) if with_track else None,
            track_confidence=np.stack(confidences)
            if with_track and all(len(c) == validation.frames for c in confidences)
            else None,
        )


MIN_CONFIDENCE = 0.3  # as `trajlab explain`: frames of the track below it are left out of the fit
MIN_FRAMES = MIN_POINTS  # fewer confident frames than this: every frame is kept (as explain does)


def confident_frames(confidence: np.ndarray | None, frames: int) -> np.ndarray:
    """Which of a track's ``frames`` the describer is given: those at MIN_CONFIDENCE or above,
    or all of them when fewer than MIN_FRAMES are (bool mask (frames,))."""
    if confidence is None or len(confidence) != frames:
        return np.ones(frames, dtype=bool)
    keep = np.asarray(confidence) >= MIN_CONFIDENCE
    return keep if int(keep.sum()) >= MIN_FRAMES else np.ones(frames, dtype=bool)


def _points(arr: np.ndarray) -> list[common_pb2.Point3]:
    return [common_pb2.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in arr]


class DescriberSource:
    """Sample trajectories turned into equations and descriptions by the describer."""

    def __init__(self, target: str, *, timeout_seconds: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout_seconds

    def list_backends(self) -> describer_pb2.ListBackendsResponse:
        with open_channel(self.target) as ch:
            stub = describer_pb2_grpc.DescriberServiceStub(ch)
            return stub.ListBackends(describer_pb2.ListBackendsRequest(), timeout=self.timeout)

    def describe(
        self,
        branch: str,
        validation: ValidationSet,
        index: int,
        *,
        predicted_class: int | None,
        forecast: np.ndarray | None,
        forecast_times: np.ndarray | None,
        track: np.ndarray | None = None,
        track_confidence: np.ndarray | None = None,
    ) -> SampleDescription:
        """Describe one validation trajectory for a branch; an RPC failure is kept in ``error``.

        With ``track`` (T, 3), the served model's own observed track, the describer is given
        its confident frames (:func:`confident_frames`) instead of the true positions; the
        truth still scores the answer.
        """
        T = validation.frames
        pos = validation.positions[index]
        times = validation.times.astype(np.float64)
        given, given_times, keep = pos[:T], times[:T], None
        if track is not None:
            keep = confident_frames(track_confidence, len(track))
            given, given_times = np.asarray(track)[keep], times[:T][keep]
        sample = SampleDescription(
            index=index,
            true_class=validation.class_names[int(validation.labels[index])],
            predicted_class=validation.class_names[predicted_class] if predicted_class is not None else "",
            observed=pos[:T],
            truth_future=pos[T:],
            forecast=forecast,
            true_equations=validation.equations[index] if index < len(validation.equations) else None,
            track=None if track is None else np.asarray(track),
            track_kept=keep,
        )
        req = describer_pb2.DescribeRequest(
            observed=_points(given),
            observed_times=[float(t) for t in given_times],
            predicted_class=(predicted_class + 1) if predicted_class is not None else 0,
            # The describer knows branches, not runs: b1@s1 and b1-noperc@s0 use b1's backend.
            branch=split_ablation(split_run_name(branch)[0])[0],
            truth=_points(pos),
            truth_times=[float(t) for t in times],
        )
        if forecast is not None and forecast_times is not None and len(forecast_times) == len(forecast):
            req.forecast.extend(_points(forecast))
            req.forecast_times.extend(float(t) for t in forecast_times)
        try:
            with open_channel(self.target) as ch:
                stub = describer_pb2_grpc.DescriberServiceStub(ch)
                resp = stub.Describe(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            sample.error = rpc_reason(exc)
            return sample
        _read_answer(sample, resp, validation.class_names)
        return sample


def _read_answer(
    sample: SampleDescription, resp: describer_pb2.DescribeResponse, class_names: tuple[str, ...]
) -> None:
    """Copy the describer's answer (equations, backend, usage, score) into ``sample``."""
    sample.equations = (resp.equations.x, resp.equations.y, resp.equations.z)
    sample.description = resp.description
    sample.backend_requested = resp.backend_requested
    sample.backend_used = resp.backend_used
    sample.model = resp.model
    sample.fallback_used = resp.fallback_used
    sample.fallback_reason = resp.fallback_reason
    sample.latency_ms = resp.latency_ms
    dc = int(resp.described_class)
    sample.described_class = class_names[dc - 1] if 0 < dc <= len(class_names) else ""
    if resp.HasField("usage"):
        u = resp.usage
        sample.llm_attempts, sample.llm_seconds = u.attempts, u.seconds
        sample.prompt_tokens, sample.completion_tokens = u.prompt_tokens, u.completion_tokens
        sample.cost = u.cost if u.priced else None
    sc = resp.score
    sample.scored = sc.scored
    sample.parsed = sc.parsed
    sample.score_error = sc.error
    if sc.scored:
        sample.normalized_rmse = sc.normalized_rmse if sc.parsed else None
        sample.accurate = sc.accurate

"""In-process fake trainer, encoder and describer servicers with canned but consistent data.

The fakes implement the real protos and run on real gRPC servers bound to 127.0.0.1:0.
Consistency: each branch has a fixed set of clips it misclassifies and a fixed forecast
offset; the fake encoder answers with exactly those, and the fake trainer's results are
computed from the same predictions, so the served figures equal the trainer's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np

from services.reporter.metrics import compute_metrics
from services.reporter.model import ValidationSet
from trajlab.codec import clip_to_array
from trajlab.common.v1 import common_pb2
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.profiles import CLASS_NAMES
from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc

T, H, W, HORIZON, FPS = 8, 8, 8, 4, 8.0
PER_CLASS = 6  # clips per class in the fake validation split (24 in all)


def make_validation() -> ValidationSet:
    """24 clips (6 per class); pixel (0, 0, 0, 0) of clip i holds i so the fake encoder knows it."""
    n = PER_CLASS * len(CLASS_NAMES)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), PER_CLASS).astype(np.int64)
    times = (np.arange(T + HORIZON) / FPS).astype(np.float32)
    t = times.astype(np.float64)
    pos = np.zeros((n, T + HORIZON, 3), dtype=np.float32)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = rng.uniform(0.5, 1.5)
        c = labels[i]
        if c == 0:  # linear
            p = np.stack([a * t, 0.5 * t, 2 + 0.2 * t], axis=1)
        elif c == 1:  # circular
            p = np.stack([a * np.cos(2 * t), a * np.sin(2 * t), 3 + 0 * t], axis=1)
        elif c == 2:  # helical
            p = np.stack([a * np.cos(2 * t), a * np.sin(2 * t), 3 + 0.4 * t], axis=1)
        else:  # parabolic
            p = np.stack([a * t, 1.0 + 2.0 * t - 4.9 * t**2 / 2, 3 + 0 * t], axis=1)
        pos[i] = p
    extent = (pos.max(axis=1) - pos.min(axis=1)).max(axis=1).astype(np.float32)
    clips = np.zeros((n, T, H, W, 3), dtype=np.uint8)
    clips[:, 0, 0, 0, 0] = np.arange(n)
    eqs = [("t", "0.5*t", "2 + 0.2*t")] * n
    return ValidationSet(
        clips=clips,
        labels=labels,
        positions=pos,
        times=times,
        extent=extent,
        fps=FPS,
        class_names=CLASS_NAMES,
        manifest_sha256="f" * 64,
        equations=eqs,
        source="fake split",
    )


@dataclass
class BranchSpec:
    """What a fake branch gets wrong and how far off its forecast is."""

    name: str
    wrong: list[int]  # validation indices it misclassifies (as the next class)
    offset: float  # world units added to every forecast coordinate
    encoder: str = "i3d"
    enhancement: str = "compression"
    backend: str = "openai:gpt-4"
    params: int = 123_456
    size_bytes: int = 2_000_000
    training_seconds: float = 95.0
    epochs: int = 5
    state: int = trainer_pb2.TRAINING_STATE_DONE
    error: str = ""
    # Observed-track error, % of extent; None = no track readout (older run or readout off).
    track_pct: float | None = None

    def predictions(self, val: ValidationSet) -> np.ndarray:
        pred = val.labels.copy()
        for i in self.wrong:
            pred[i] = (pred[i] + 1) % len(CLASS_NAMES)
        return pred

    def forecasts(self, val: ValidationSet) -> np.ndarray:
        return val.positions[:, T:] + self.offset


def _branch_msg(s: BranchSpec) -> common_pb2.Branch:
    return common_pb2.Branch(
        name=s.name, encoder=s.encoder, enhancement=s.enhancement, describer_backend=s.backend
    )


OWN_TRACK_NAMES = ("constant_velocity", "constant_acceleration", "constant_turn_rate", "best_of")


def own_track_pcts(spec: BranchSpec) -> dict[str, float]:
    """Forecast MAE (% extent) of each baseline on the fake model's own track: worse with its error."""
    assert spec.track_pct is not None
    return {
        n: base + spec.track_pct for n, base in zip(OWN_TRACK_NAMES, (16.0, 18.5, 17.0, 12.0), strict=True)
    }


def observed_track_for(spec: BranchSpec, val: ValidationSet) -> trainer_pb2.ObservedTrack | None:
    if spec.track_pct is None:
        return None
    world = float(val.extent.mean()) / 100.0  # world units per % of extent, near enough for a fake
    return trainer_pb2.ObservedTrack(
        present=True,
        observed_mae=spec.track_pct * world,
        observed_mae_pct=spec.track_pct,
        baselines=[
            trainer_pb2.BaselineResult(
                name=n,
                accuracy=-1,
                forecast_mae=p * world,
                forecast_mae_pct=p,
                ade=2 * p * world,
                fde=3 * p * world,
            )
            for n, p in own_track_pcts(spec).items()
        ],
    )


def results_for(spec: BranchSpec, val: ValidationSet) -> trainer_pb2.EvaluationResults:
    m = compute_metrics(
        labels=val.labels,
        predictions=spec.predictions(val),
        truth=val.positions[:, T:],
        forecast=spec.forecasts(val),
        extent=val.extent,
        num_classes=len(CLASS_NAMES),
    )
    per_class = []
    for c, name in enumerate(CLASS_NAMES):
        sel = val.labels == c
        mc = compute_metrics(
            labels=val.labels[sel],
            predictions=spec.predictions(val)[sel],
            truth=val.positions[sel, T:],
            forecast=spec.forecasts(val)[sel],
            extent=val.extent[sel],
            num_classes=len(CLASS_NAMES),
        )
        per_class.append(
            trainer_pb2.ClassMetrics(
                class_name=name,
                support=int(sel.sum()),
                accuracy=mc.accuracy,
                forecast_mae=mc.forecast_mae,
                forecast_mae_pct=mc.forecast_mae_pct,
                ade=mc.ade,
                fde=mc.fde,
            )
        )
    baselines = [
        trainer_pb2.BaselineResult(
            name="chance", accuracy=0.25, forecast_mae=-1, forecast_mae_pct=-1, ade=-1, fde=-1
        ),
        trainer_pb2.BaselineResult(
            name="constant_velocity",
            accuracy=-1,
            forecast_mae=0.3,
            forecast_mae_pct=15.0,
            ade=0.6,
            fde=0.9,
            per_class=[
                trainer_pb2.ClassMetrics(
                    class_name=n,
                    support=PER_CLASS,
                    accuracy=-1,
                    forecast_mae=0.3,
                    forecast_mae_pct=1.0 if n == "linear" else 20.0,
                    ade=0.6,
                    fde=0.9,
                )
                for n in CLASS_NAMES
            ],
        ),
    ]
    return trainer_pb2.EvaluationResults(
        branch=_branch_msg(spec),
        class_names=list(CLASS_NAMES),
        confusion_matrix=[v for row in m.confusion for v in row],
        accuracy=m.accuracy,
        mean_class_accuracy=m.mean_class_accuracy,
        forecast_mae=m.forecast_mae,
        forecast_rmse=m.forecast_rmse,
        forecast_mae_pct=m.forecast_mae_pct,
        forecast_rmse_pct=m.forecast_rmse_pct,
        ade=m.ade,
        fde=m.fde,
        per_class=per_class,
        baselines=baselines,
        zero_shot_accuracy=-1.0,
        parameters=spec.params,
        model_size_bytes=spec.size_bytes,
        training_seconds=spec.training_seconds,
        model_version=1,
        samples=len(val),
        warnings=[f"loses to constant_velocity on linear motion ({spec.name})"],
        created_at="2026-11-22T03:00:00Z",
        dataset_manifest_sha256=val.manifest_sha256,
        profile="quick",
        observed_track=observed_track_for(spec, val),
    )


def history_for(spec: BranchSpec, final: trainer_pb2.EvaluationResults) -> list[trainer_pb2.EpochMetrics]:
    out = []
    for e in range(1, spec.epochs + 1):
        f = e / spec.epochs
        out.append(
            trainer_pb2.EpochMetrics(
                epoch=e,
                train_loss=2.0 / e,
                val_loss=2.2 / e,
                train_accuracy=min(1.0, 0.3 + 0.7 * f),
                val_accuracy=final.accuracy * f if e < spec.epochs else final.accuracy,
                val_mean_class_accuracy=final.mean_class_accuracy * f,
                forecast_mae=final.forecast_mae / f,
                forecast_rmse=final.forecast_rmse / f,
                forecast_mae_pct=final.forecast_mae_pct / f,
                forecast_rmse_pct=final.forecast_rmse_pct / f,
                ade=final.ade / f,
                fde=final.fde / f,
                clips_per_second=40.0 + e,
                learning_rate=1e-3,
                zero_shot_accuracy=-1,
                duration_seconds=spec.training_seconds / spec.epochs,
            )
        )
    return out


class FakeTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, spec: BranchSpec, val: ValidationSet) -> None:
        self.spec = spec
        self.results = results_for(spec, val)
        self.history = history_for(spec, self.results)

    def _status(self) -> trainer_pb2.TrainingStatus:
        s = self.spec
        done = s.state == trainer_pb2.TRAINING_STATE_DONE
        last = self.history[-1]
        return trainer_pb2.TrainingStatus(
            branch=_branch_msg(s),
            state=s.state,
            epoch=s.epochs if done else 2,
            total_epochs=s.epochs,
            train_loss=last.train_loss,
            val_loss=last.val_loss,
            val_accuracy=last.val_accuracy,
            forecast_mae_pct=last.forecast_mae_pct,
            clips_per_second=last.clips_per_second,
            eta_seconds=0 if done else 42.0,
            model_version=1 if done else 0,
            profile="quick",
            error=s.error,
            updated_at="2026-11-22T03:00:00Z",
        )

    def GetStatus(self, request, context):  # type: ignore[no-untyped-def]
        return trainer_pb2.GetStatusResponse(status=self._status())

    def WatchStatus(self, request, context):  # type: ignore[no-untyped-def]
        while context.is_active():
            yield trainer_pb2.WatchStatusResponse(status=self._status())
            time.sleep(0.2)

    def GetHistory(self, request, context):  # type: ignore[no-untyped-def]
        done = self.spec.state == trainer_pb2.TRAINING_STATE_DONE
        return trainer_pb2.GetHistoryResponse(
            branch=_branch_msg(self.spec), epochs=self.history if done else self.history[:2]
        )

    def GetResults(self, request, context):  # type: ignore[no-untyped-def]
        if self.spec.state != trainer_pb2.TRAINING_STATE_DONE:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "training not finished")
        return trainer_pb2.GetResultsResponse(results=self.results)


class FakeEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    def __init__(self, specs: list[BranchSpec], val: ValidationSet) -> None:
        self.specs = {s.name: s for s in specs}
        self.val = val
        self.calls = 0

    def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        return encoder_pb2.ListModelsResponse(
            models=[
                encoder_pb2.ModelInfo(
                    model=common_pb2.ModelRef(branch=b, version=1),
                    is_default=True,
                    class_names=list(CLASS_NAMES),
                    forecast_horizon=HORIZON,
                )
                for b in self.specs
            ]
        )

    def Analyze(self, request, context):  # type: ignore[no-untyped-def]
        spec = self.specs.get(request.model.branch)
        if spec is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model for branch {request.model.branch}")
        self.calls += 1
        i = int(clip_to_array(request.clip)[0, 0, 0, 0])
        pred = int(spec.predictions(self.val)[i])
        fc = spec.forecasts(self.val)[i]
        probs = [0.0] * len(CLASS_NAMES)
        probs[pred] = 1.0
        return encoder_pb2.AnalyzeResponse(
            model=common_pb2.ModelRef(branch=spec.name, version=1),
            motion_class=pred + 1,
            class_name=CLASS_NAMES[pred],
            probabilities=probs,
            class_names=list(CLASS_NAMES),
            positions=[common_pb2.Point3(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in fc],
            times=[float(t) for t in self.val.times[T:]],
            embedding=[0.0] * 8,
        )


class FakeDescriber(describer_pb2_grpc.DescriberServiceServicer):
    """openai and tgi are 'not configured': every answer is the analytic fallback, flagged as such."""

    def __init__(self, defaults: dict[str, str]) -> None:
        self.defaults = defaults
        self.requests: list[describer_pb2.DescribeRequest] = []

    def ListBackends(self, request, context):  # type: ignore[no-untyped-def]
        return describer_pb2.ListBackendsResponse(
            backends=[
                describer_pb2.BackendInfo(
                    name="analytic", kind="analytic", health=describer_pb2.BACKEND_HEALTH_HEALTHY
                ),
                describer_pb2.BackendInfo(
                    name="openai:gpt-4",
                    kind="openai",
                    model="gpt-4",
                    health=describer_pb2.BACKEND_HEALTH_NOT_CONFIGURED,
                    detail="no OPENAI_API_KEY",
                ),
            ],
            branch_defaults=self.defaults,
        )

    def Describe(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.append(request)
        requested = request.backend or self.defaults.get(request.branch, "analytic")
        fell_back = requested != "analytic"
        cls = request.predicted_class
        accurate = cls in (common_pb2.MOTION_CLASS_LINEAR, common_pb2.MOTION_CLASS_PARABOLIC)
        return describer_pb2.DescribeResponse(
            equations=describer_pb2.AxisEquations(x="1.0*t", y="0.5*t", z="2 + 0.2*t"),
            description=f"An object moving ({CLASS_NAMES[cls - 1] if cls else 'unknown'}).",
            backend_used="analytic",
            model="",
            fallback_used=fell_back,
            fallback_reason="no OPENAI_API_KEY"
            if requested.startswith("openai")
            else ("no TGI endpoint" if fell_back else ""),
            backend_requested=requested,
            latency_ms=1.5,
            described_class=cls,
            score=describer_pb2.EquationScore(
                scored=bool(len(request.truth)),
                parsed=True,
                normalized_rmse=0.01 if accurate else 0.2,
                accurate=accurate,
            ),
        )


@dataclass
class Running:
    server: grpc.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def serve(register, servicer) -> Running:  # type: ignore[no-untyped-def]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    register(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return Running(server, port)


@dataclass
class FakeWorld:
    """A set of running fakes and the targets to reach them."""

    val: ValidationSet
    specs: list[BranchSpec]
    trainers: dict[str, Running] = field(default_factory=dict)
    encoder: Running | None = None
    describer: Running | None = None
    encoder_servicer: FakeEncoder | None = None
    describer_servicer: FakeDescriber | None = None

    def stop(self) -> None:
        for r in [*self.trainers.values(), self.encoder, self.describer]:
            if r is not None:
                r.server.stop(0)


def start_world(specs: list[BranchSpec], *, down: tuple[str, ...] = ()) -> FakeWorld:
    """Start a fake trainer per spec (except those in ``down``), an encoder and a describer."""
    val = make_validation()
    world = FakeWorld(val=val, specs=specs)
    for s in specs:
        if s.name in down:
            continue
        world.trainers[s.name] = serve(
            trainer_pb2_grpc.add_TrainerServiceServicer_to_server, FakeTrainer(s, val)
        )
    world.encoder_servicer = FakeEncoder(
        [s for s in specs if s.state == trainer_pb2.TRAINING_STATE_DONE], val
    )
    world.encoder = serve(encoder_pb2_grpc.add_EncoderServiceServicer_to_server, world.encoder_servicer)
    world.describer_servicer = FakeDescriber({s.name: s.backend for s in specs})
    world.describer = serve(
        describer_pb2_grpc.add_DescriberServiceServicer_to_server, world.describer_servicer
    )
    return world


def free_port() -> int:
    """A port nothing listens on (bound then released), for 'unreachable' targets."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def default_specs() -> list[BranchSpec]:
    """b1 and b2 tie on accuracy (3 of 24 wrong); b2's forecast is closer, so b2 wins by MAE.

    b3 is worse and has no track readout (no observed_track); b4 failed during training (no
    results, not served).
    """
    return [
        BranchSpec("b1", wrong=[1, 8, 15], offset=0.05, track_pct=2.5),
        BranchSpec("b2", wrong=[2, 9, 20], offset=0.02, encoder="dual_pathway", track_pct=1.25),
        BranchSpec(
            "b3",
            wrong=[0, 3, 7, 12, 13, 19],
            offset=0.10,
            enhancement="text_alignment",
            backend="tgi:mistral",
        ),
        BranchSpec(
            "b4",
            wrong=[5],
            offset=0.01,
            encoder="dual_pathway",
            enhancement="none",
            backend="tgi:phi-2",
            state=trainer_pb2.TRAINING_STATE_FAILED,
            error="loss became NaN at epoch 2",
        ),
    ]


def iter_targets(world: FakeWorld, down_targets: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    for s in world.specs:
        if s.name in world.trainers:
            yield s.name, world.trainers[s.name].target
        elif down_targets and s.name in down_targets:
            yield s.name, down_targets[s.name]

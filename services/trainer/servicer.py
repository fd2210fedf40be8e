"""gRPC servicer of the trainer: protobuf <-> TrainingController, nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from services.trainer.controller import TrainingController
from services.trainer.training import TrainerStatus
from trajlab.common.v1 import common_pb2
from trajlab.errors import InvalidArgument
from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from trajlab.trainer_results import history_to_proto, results_to_proto

SERVICE_NAME = "trajlab.trainer.v1.TrainerService"


def state_to_proto(state: str) -> int:
    return int(trainer_pb2.TrainingState.Value(f"TRAINING_STATE_{state.upper()}"))


def branch_to_proto(controller: TrainingController) -> common_pb2.Branch:
    b = controller.branch
    return common_pb2.Branch(
        name=b.name,
        encoder=str(b.encoder),
        enhancement=str(b.enhancement),
        describer_backend=b.describer_backend,
    )


def status_to_proto(s: TrainerStatus, branch: common_pb2.Branch) -> trainer_pb2.TrainingStatus:
    return trainer_pb2.TrainingStatus(
        branch=branch,
        state=state_to_proto(s.state),  # type: ignore[arg-type]
        epoch=s.epoch,
        total_epochs=s.total_epochs,
        step=s.step,
        steps_per_epoch=s.steps_per_epoch,
        train_loss=s.train_loss,
        val_loss=s.val_loss,
        val_accuracy=s.val_accuracy,
        forecast_mae_pct=s.forecast_mae_pct,
        clips_per_second=s.clips_per_second,
        eta_seconds=s.eta_seconds,
        model_version=s.model_version,
        profile=s.profile,
        resumed_from_epoch=s.resumed_from_epoch,
        updated_at=s.updated_at,
        error=s.error,
    )


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Translates the trainer's RPCs; the controller is injected."""

    def __init__(
        self, controller: TrainingController, *, default_watch_interval_seconds: float = 1.0
    ) -> None:
        self._c = controller
        self._branch = branch_to_proto(controller)
        self._watch_interval = default_watch_interval_seconds

    def StartTraining(
        self, request: trainer_pb2.StartTrainingRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.StartTrainingResponse:
        started, status = self._c.start(request.profile)
        return trainer_pb2.StartTrainingResponse(
            started=started, status=status_to_proto(status, self._branch)
        )

    def GetStatus(
        self, request: trainer_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.GetStatusResponse:
        return trainer_pb2.GetStatusResponse(status=status_to_proto(self._c.status(), self._branch))

    def WatchStatus(
        self, request: trainer_pb2.WatchStatusRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.WatchStatusResponse]:
        interval = request.min_interval_seconds
        if interval < 0 or interval != interval:
            raise InvalidArgument(f"min_interval_seconds must be >= 0 (0 = server default), got {interval}")
        for status in self._c.watch(interval or self._watch_interval, context.is_active):
            yield trainer_pb2.WatchStatusResponse(status=status_to_proto(status, self._branch))

    def GetHistory(
        self, request: trainer_pb2.GetHistoryRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.GetHistoryResponse:
        return trainer_pb2.GetHistoryResponse(branch=self._branch, epochs=history_to_proto(self._c.history()))

    def GetResults(
        self, request: trainer_pb2.GetResultsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.GetResultsResponse:
        return trainer_pb2.GetResultsResponse(results=results_to_proto(self._c.results()))

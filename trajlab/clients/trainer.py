"""Typed client of a trainer service (one trainer process per branch).

>>> with TrainerClient("127.0.0.1:50052") as tr:
...     tr.start_training(profile="quick")
...     for s in tr.watch_status():
...         print(s.state, s.epoch, s.total_epochs)
...     res = tr.get_results()   # dict in trainer.proto's field names

Every unary call has a deadline (``timeout`` seconds). The read-only methods are
retried on UNAVAILABLE by gRPC's service config; StartTraining is idempotent on the
server but not retried by the client, as a rule for state-changing calls. Failures
raise ``grpc.RpcError`` with the server's status code and message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from google.protobuf import json_format

from trajlab.clients._channel import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT_SECONDS, open_channel
from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc

SERVICE = "trajlab.trainer.v1.TrainerService"
_READ_ONLY = ("GetStatus", "GetHistory", "GetResults")


@dataclass(frozen=True)
class TrainingStatus:
    """A trainer's status; ``state`` is one of idle, training, evaluating, exporting, done, failed."""

    branch: str
    state: str
    epoch: int
    total_epochs: int
    step: int
    steps_per_epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float  # 0..1
    forecast_mae_pct: float  # percent of trajectory extent
    clips_per_second: float
    eta_seconds: float  # negative when unknown
    model_version: int  # 0 until exported
    profile: str
    resumed_from_epoch: int
    updated_at: str  # RFC 3339 UTC
    error: str

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status(msg: trainer_pb2.TrainingStatus) -> TrainingStatus:
    state = trainer_pb2.TrainingState.Name(msg.state).removeprefix("TRAINING_STATE_").lower()
    return TrainingStatus(
        branch=msg.branch.name,
        state=state,
        epoch=msg.epoch,
        total_epochs=msg.total_epochs,
        step=msg.step,
        steps_per_epoch=msg.steps_per_epoch,
        train_loss=msg.train_loss,
        val_loss=msg.val_loss,
        val_accuracy=msg.val_accuracy,
        forecast_mae_pct=msg.forecast_mae_pct,
        clips_per_second=msg.clips_per_second,
        eta_seconds=msg.eta_seconds,
        model_version=msg.model_version,
        profile=msg.profile,
        resumed_from_epoch=msg.resumed_from_epoch,
        updated_at=msg.updated_at,
        error=msg.error,
    )


def _as_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class TrainerClient:
    """Blocking client of one trainer."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        retries: bool = True,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = open_channel(
            target,
            max_message_bytes=max_message_bytes,
            idempotent=[(SERVICE, m) for m in _READ_ONLY],
            retries=retries,
        )
        self._stub = trainer_pb2_grpc.TrainerServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> TrainerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def start_training(
        self, profile: str = "", *, timeout: float | None = None
    ) -> tuple[bool, TrainingStatus]:
        """Start (or resume) training; (True if this call started it, status after the call)."""
        resp = self._stub.StartTraining(
            trainer_pb2.StartTrainingRequest(profile=profile), timeout=self._timeout(timeout)
        )
        return resp.started, _status(resp.status)

    def get_status(self, *, timeout: float | None = None) -> TrainingStatus:
        return _status(
            self._stub.GetStatus(trainer_pb2.GetStatusRequest(), timeout=self._timeout(timeout)).status
        )

    def watch_status(
        self, min_interval_seconds: float = 0.0, *, timeout: float | None = None
    ) -> Iterator[TrainingStatus]:
        """Status updates until DONE or FAILED; ``timeout`` bounds the whole stream (None = no bound)."""
        stream = self._stub.WatchStatus(
            trainer_pb2.WatchStatusRequest(min_interval_seconds=min_interval_seconds), timeout=timeout
        )
        try:
            for resp in stream:
                yield _status(resp.status)
        finally:
            stream.cancel()

    def get_history(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """Per-epoch metrics (EpochMetrics fields), oldest first."""
        resp = self._stub.GetHistory(trainer_pb2.GetHistoryRequest(), timeout=self._timeout(timeout))
        return [_as_dict(e) for e in resp.epochs]

    def get_results(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The evaluation (EvaluationResults fields); FAILED_PRECONDITION before training is done."""
        resp = self._stub.GetResults(trainer_pb2.GetResultsRequest(), timeout=self._timeout(timeout))
        return _as_dict(resp.results)

    def wait_until_serving(self, timeout: float = 30.0, poll_seconds: float = 0.2) -> None:
        """Block until the server's health says SERVING; TimeoutError otherwise."""
        from trajlab.clients.health import wait_until_serving

        wait_until_serving(
            self._channel,
            what=f"trainer at {self.target}",
            service=SERVICE,
            timeout=timeout,
            poll_seconds=poll_seconds,
            check_timeout=poll_seconds * 5,
        )

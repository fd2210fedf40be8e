"""Prometheus metrics of the trainer, labelled by branch (default registry, ``trajlab_trainer_*``)."""

from __future__ import annotations

from prometheus_client import Enum, Gauge

from services.trainer.training import STATES, TrainerStatus

EPOCH = Gauge("trajlab_trainer_epoch", "Epochs completed.", ["branch"])
TOTAL_EPOCHS = Gauge("trajlab_trainer_total_epochs", "Epochs planned.", ["branch"])
TRAIN_LOSS = Gauge("trajlab_trainer_train_loss", "Mean training loss of the last epoch.", ["branch"])
VAL_LOSS = Gauge("trajlab_trainer_val_loss", "Validation loss of the last epoch.", ["branch"])
VAL_ACCURACY = Gauge(
    "trajlab_trainer_val_accuracy", "Validation accuracy of the last epoch, 0..1.", ["branch"]
)
FORECAST_MAE = Gauge(
    "trajlab_trainer_forecast_mae", "Validation forecast MAE of the last epoch, world units.", ["branch"]
)
FORECAST_MAE_PCT = Gauge(
    "trajlab_trainer_forecast_mae_percent",
    "Validation forecast MAE of the last epoch, percent of trajectory extent.",
    ["branch"],
)
CLIPS_PER_SECOND = Gauge(
    "trajlab_trainer_clips_per_second", "Training throughput, clips per second.", ["branch"]
)
MODEL_VERSION = Gauge(
    "trajlab_trainer_model_version", "Exported model version (0 before export).", ["branch"]
)
STATE = Enum("trajlab_trainer_state", "Where the training run is.", ["branch"], states=list(STATES))


def record(status: TrainerStatus) -> None:
    """Copy a status snapshot into the gauges."""
    b = status.branch
    EPOCH.labels(b).set(status.epoch)
    TOTAL_EPOCHS.labels(b).set(status.total_epochs)
    TRAIN_LOSS.labels(b).set(status.train_loss)
    VAL_LOSS.labels(b).set(status.val_loss)
    VAL_ACCURACY.labels(b).set(status.val_accuracy)
    FORECAST_MAE.labels(b).set(status.forecast_mae)
    FORECAST_MAE_PCT.labels(b).set(status.forecast_mae_pct)
    CLIPS_PER_SECOND.labels(b).set(status.clips_per_second)
    MODEL_VERSION.labels(b).set(status.model_version)
    STATE.labels(b).state(status.state)

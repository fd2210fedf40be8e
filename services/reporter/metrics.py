"""Classification and forecast figures computed from predictions (the served-model evaluation).

Definitions (the same the trainer documents in trainer.proto):
- MAE: mean absolute error over clips, forecast steps and the three axes, world units.
- RMSE: square root of the mean squared error over the same, world units.
- "% of extent": each clip's errors divided by that clip's extent, times 100, before the
  mean (MAE) or the root mean square (RMSE), so long and short trajectories weigh the same.
- ADE: mean Euclidean distance over the forecast steps; FDE: the distance at the last step.
"""

from __future__ import annotations

import numpy as np

from services.reporter.model import ForecastMetrics


def compute_metrics(
    *,
    labels: np.ndarray,
    predictions: np.ndarray,
    truth: np.ndarray,
    forecast: np.ndarray,
    extent: np.ndarray,
    num_classes: int,
) -> ForecastMetrics:
    """Figures of predicted classes and forecasts against the truth.

    labels, predictions: int (N,); truth, forecast: (N, horizon, 3) world units;
    extent: (N,) world units, > 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    truth = np.asarray(truth, dtype=np.float64)
    forecast = np.asarray(forecast, dtype=np.float64)
    extent = np.maximum(np.asarray(extent, dtype=np.float64), 1e-12)
    n = int(labels.shape[0])
    if n == 0:
        raise ValueError("no clips to score")
    if truth.shape != forecast.shape:
        raise ValueError(f"forecast shape {forecast.shape} differs from truth shape {truth.shape}")

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(axis=1)
    per_class: list[float | None] = [
        float(confusion[c, c] / support[c]) if support[c] else None for c in range(num_classes)
    ]
    present = [a for a in per_class if a is not None]

    err = forecast - truth  # (N, h, 3)
    rel = err / extent[:, None, None]  # (N, h, 3), fraction of each clip's extent
    dist = np.linalg.norm(err, axis=2)  # (N, h)
    return ForecastMetrics(
        samples=n,
        accuracy=float((labels == predictions).mean()),
        mean_class_accuracy=float(np.mean(present)) if present else 0.0,
        confusion=confusion.tolist(),
        per_class_accuracy=per_class,
        forecast_mae=float(np.abs(err).mean()),
        forecast_rmse=float(np.sqrt((err**2).mean())),
        forecast_mae_pct=float(np.abs(rel).mean() * 100.0),
        forecast_rmse_pct=float(np.sqrt((rel**2).mean()) * 100.0),
        ade=float(dist.mean()),
        fde=float(dist[:, -1].mean()),
    )


def percentile_ms(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) of values, or None when there are none."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))

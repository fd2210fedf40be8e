"""Scores on the validation split: classification, forecasting, per class, and the physics baselines.

Forecast errors are in world units; ``*_pct`` figures divide each sample's error by
that trajectory's extent (``Split.extent``) and multiply by 100. MAE and RMSE are
over every coordinate of every forecast step; ADE is the mean Euclidean error over
the forecast steps, FDE the Euclidean error at the last step.
The result dicts use the field names of ``trainer.proto`` so the servicer can
translate them without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from services.trainer.baselines import FORECASTERS, best_of


def forecast_metrics(pred: np.ndarray, true: np.ndarray, extent: np.ndarray) -> dict[str, float]:
    """pred, true (N, h, 3) world units; extent (N,) world units."""
    if len(pred) == 0:
        return {
            k: 0.0
            for k in ("forecast_mae", "forecast_rmse", "forecast_mae_pct", "forecast_rmse_pct", "ade", "fde")
        }
    err = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    ext = np.maximum(np.asarray(extent, np.float64), 1e-9)[:, None, None]
    dist = np.linalg.norm(err, axis=-1)  # (N, h)
    return {
        "forecast_mae": float(np.abs(err).mean()),
        "forecast_rmse": float(np.sqrt((err**2).mean())),
        "forecast_mae_pct": float((np.abs(err) / ext).mean() * 100.0),
        "forecast_rmse_pct": float(np.sqrt(((err / ext) ** 2).mean()) * 100.0),
        "ade": float(dist.mean()),
        "fde": float(dist[:, -1].mean()),
    }


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def classification_metrics(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    cm = confusion_matrix(pred, labels, num_classes)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(num_classes), where=support > 0)
    return {
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
        "mean_class_accuracy": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "confusion": cm,
        "recall": recall,
        "support": support,
    }


def per_class_metrics(
    class_names: Sequence[str],
    labels: np.ndarray,
    forecast: np.ndarray | None,
    future: np.ndarray,
    extent: np.ndarray,
    recall: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    out = []
    for k, name in enumerate(class_names):
        mask = labels == k
        row: dict[str, Any] = {
            "class_name": name,
            "support": int(mask.sum()),
            "accuracy": float(recall[k]) if recall is not None else -1.0,
        }
        if forecast is not None and mask.any():
            m = forecast_metrics(forecast[mask], future[mask], extent[mask])
            row.update(
                forecast_mae=m["forecast_mae"],
                forecast_mae_pct=m["forecast_mae_pct"],
                ade=m["ade"],
                fde=m["fde"],
            )
        else:
            row.update(forecast_mae=-1.0, forecast_mae_pct=-1.0, ade=-1.0, fde=-1.0)
        out.append(row)
    return out


def evaluate_baselines(
    observed: np.ndarray,
    future: np.ndarray,
    labels: np.ndarray,
    extent: np.ndarray,
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Chance, the three physics forecasters and the per-sample oracle, on true 3D positions."""
    horizon = future.shape[1]
    results: list[dict[str, Any]] = []
    k = len(class_names)
    # Chance: uniform guessing, expected accuracy 1/K; it does not forecast.
    chance_recall = np.full(k, 1.0 / k)
    results.append(
        {
            "name": "chance",
            "accuracy": 1.0 / k,
            "forecast_mae": -1.0,
            "forecast_mae_pct": -1.0,
            "ade": -1.0,
            "fde": -1.0,
            "per_class": per_class_metrics(class_names, labels, None, future, extent, chance_recall),
        }
    )
    named = [(name, f(observed, horizon)) for name, f in FORECASTERS.items()]
    named.append(("best_of", best_of(observed, future)[0]))
    for name, pred in named:
        m = forecast_metrics(pred, future, extent)
        results.append(
            {
                "name": name,
                "accuracy": -1.0,
                "forecast_mae": m["forecast_mae"],
                "forecast_mae_pct": m["forecast_mae_pct"],
                "ade": m["ade"],
                "fde": m["fde"],
                "per_class": per_class_metrics(class_names, labels, pred, future, extent),
            }
        )
    return results


# (class, baseline that is exact on it): losing to these hints at a bug when the
# positions carry noise; on noise-free positions they are exact and always win.
def track_error(track: np.ndarray, observed: np.ndarray, extent: np.ndarray) -> tuple[float, float]:
    """Observed-track error: (MAE in world units, mean per-clip MAE in % of the clip's extent)."""
    err = np.abs(np.asarray(track, np.float64) - np.asarray(observed, np.float64)).mean(axis=(1, 2))  # (N,)
    return float(err.mean()), float((err / np.asarray(extent, np.float64)).mean() * 100.0)


EXPECTED_WINS = (("linear", "constant_velocity"), ("parabolic", "constant_acceleration"))


def baseline_warnings(
    model_per_class: Sequence[dict[str, Any]], baselines: Sequence[dict[str, Any]], *, seen_as: str = ""
) -> list[str]:
    """Warnings when the model forecasts worse than the physics baseline made for a class.

    ``seen_as`` names what the baselines were given when it was not the true positions.
    """
    by_name = {b["name"]: {c["class_name"]: c for c in b["per_class"]} for b in baselines}
    model = {c["class_name"]: c for c in model_per_class}
    warnings = []
    for cls, base in EXPECTED_WINS:
        m, b = model.get(cls), by_name.get(base, {}).get(cls)
        if not m or not b or m["support"] == 0:
            continue
        if m["forecast_mae"] > b["forecast_mae"]:
            exact = (
                " (the baseline is exact on noise-free motion of this kind)"
                if b["forecast_mae"] < 1e-9
                else ""
            )
            on = f" applied to {seen_as}" if seen_as else ""
            warnings.append(
                f"loses to {base}{on} on {cls} motion: forecast MAE {m['forecast_mae_pct']:.2f} % of extent "
                f"vs {b['forecast_mae_pct']:.2f} %{exact}"
            )
    return warnings

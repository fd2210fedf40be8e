"""Physics baselines are exact on noise-free motion of their own kind; evaluation figures are right."""

from __future__ import annotations

import numpy as np
import pytest

from services.trainer.baselines import FORECASTERS, best_of
from services.trainer.evaluation import (
    baseline_warnings,
    classification_metrics,
    evaluate_baselines,
    forecast_metrics,
)

FPS = 8.0
T, H = 16, 4
rng = np.random.default_rng(7)
t = np.arange(T + H) / FPS


def linear(n: int = 6) -> np.ndarray:
    return rng.normal(size=(n, 1, 3)) + rng.normal(size=(n, 1, 3)) * t[None, :, None]


def parabolic(n: int = 6) -> np.ndarray:
    g = np.array([0.0, -9.81, 0.0])
    return linear(n) + 0.5 * g * t[None, :, None] ** 2


def helix(axial: float, n: int = 6) -> np.ndarray:
    out = []
    for _ in range(n):
        basis, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # any orientation
        r, w, ph = rng.uniform(0.5, 2.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        local = np.stack([r * np.cos(w * t + ph), r * np.sin(w * t + ph), axial * t], -1)
        out.append(local @ basis.T + rng.normal(size=3))
    return np.array(out)


@pytest.mark.parametrize(
    "motion, forecaster",
    [
        (linear, "constant_velocity"),
        (parabolic, "constant_acceleration"),
        (lambda: helix(0.0), "constant_turn_rate"),
        (lambda: helix(0.7), "constant_turn_rate"),
        (linear, "constant_turn_rate"),  # no turn: degenerates to constant velocity
        (linear, "constant_acceleration"),
    ],
)
def test_baseline_exact_on_its_own_kind(motion, forecaster: str) -> None:
    x = motion()
    pred = FORECASTERS[forecaster](x[:, :T], H)
    np.testing.assert_allclose(pred, x[:, T:], atol=1e-9)


def test_baselines_are_not_exact_off_their_kind() -> None:
    x = helix(0.0)
    assert np.abs(FORECASTERS["constant_velocity"](x[:, :T], H) - x[:, T:]).max() > 1e-3
    x = parabolic()
    assert np.abs(FORECASTERS["constant_velocity"](x[:, :T], H) - x[:, T:]).max() > 1e-3


def test_best_of_picks_the_exact_forecaster_per_sample() -> None:
    x = np.concatenate([parabolic(3), helix(0.5, 3)])
    pred, choice = best_of(x[:, :T], x[:, T:])
    np.testing.assert_allclose(pred, x[:, T:], atol=1e-9)
    names = list(FORECASTERS)
    assert [names[c] for c in choice[3:]] == ["constant_turn_rate"] * 3


def test_forecast_metrics_in_world_units_and_percent_of_extent() -> None:
    true = np.zeros((2, 4, 3))
    pred = true.copy()
    pred[:, :, 0] = 1.0  # 1 world unit off along x at every step
    m = forecast_metrics(pred, true, np.array([10.0, 20.0]))
    assert m["forecast_mae"] == pytest.approx(1 / 3)
    assert m["forecast_rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert m["ade"] == pytest.approx(1.0) and m["fde"] == pytest.approx(1.0)
    assert m["forecast_mae_pct"] == pytest.approx((1 / 3 / 10 + 1 / 3 / 20) / 2 * 100)


def test_classification_metrics_confusion_and_mean_class_accuracy() -> None:
    labels = np.array([0, 0, 0, 1, 2, 3])
    pred = np.array([0, 0, 1, 1, 2, 0])
    m = classification_metrics(pred, labels, 4)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert m["confusion"][0].tolist() == [2, 1, 0, 0] and m["confusion"][3].tolist() == [1, 0, 0, 0]


def test_evaluation_warns_when_the_model_loses_to_physics() -> None:
    names = ["linear", "circular", "helical", "parabolic"]
    x = np.concatenate([linear(4), helix(0.0, 4), helix(0.5, 4), parabolic(4)])
    labels = np.repeat(np.arange(4), 4)
    extent = np.ptp(x, axis=1).max(axis=1)
    base = evaluate_baselines(x[:, :T], x[:, T:], labels, extent, names)
    assert [b["name"] for b in base] == [
        "chance",
        "constant_velocity",
        "constant_acceleration",
        "constant_turn_rate",
        "best_of",
    ]
    assert base[0]["accuracy"] == pytest.approx(0.25)
    assert base[-1]["forecast_mae"] < 1e-9  # every sample here has an exact forecaster
    perfect = [{"class_name": n, "support": 4, "forecast_mae": 0.0, "forecast_mae_pct": 0.0} for n in names]
    assert baseline_warnings(perfect, base) == []
    poor = [{**p, "forecast_mae": 1.0, "forecast_mae_pct": 5.0} for p in perfect]
    warnings = baseline_warnings(poor, base)
    assert any("constant_velocity on linear" in w for w in warnings)
    assert any("constant_acceleration on parabolic" in w for w in warnings)

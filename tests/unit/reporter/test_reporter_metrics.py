"""Served-model figures use the trainer's definitions, so the two can be compared."""

from __future__ import annotations

import numpy as np
import pytest

from services.reporter.metrics import compute_metrics, percentile_ms


def test_figures_on_a_hand_checked_case() -> None:
    truth = np.zeros((2, 2, 3))
    fc = truth.copy()
    fc[0, :, 0] = 1.0  # clip 0 is off by 1 world unit in x at both steps
    m = compute_metrics(
        labels=np.array([0, 1]),
        predictions=np.array([0, 0]),
        truth=truth,
        forecast=fc,
        extent=np.array([10.0, 5.0]),
        num_classes=4,
    )
    assert m.accuracy == 0.5
    assert m.confusion[1][0] == 1 and m.confusion[0][0] == 1
    assert m.mean_class_accuracy == 0.5  # classes 0 (1.0) and 1 (0.0); absent classes do not count
    assert m.forecast_mae == pytest.approx(2 / 12)
    assert m.forecast_mae_pct == pytest.approx((2 / 10) / 12 * 100)
    assert m.ade == pytest.approx(0.5) and m.fde == pytest.approx(0.5)


def test_matches_the_trainer_definitions() -> None:
    from services.trainer import evaluation  # the trainer's extra is in the dev install: never skipped
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(30, 4, 3))
    fc = truth + rng.normal(scale=0.3, size=truth.shape)
    ext = rng.uniform(1, 5, size=30)
    mine = compute_metrics(
        labels=np.zeros(30, int),
        predictions=np.zeros(30, int),
        truth=truth,
        forecast=fc,
        extent=ext,
        num_classes=4,
    )
    theirs = evaluation.forecast_metrics(fc, truth, ext)
    for key in ("forecast_mae", "forecast_rmse", "forecast_mae_pct", "forecast_rmse_pct", "ade", "fde"):
        assert getattr(mine, key) == pytest.approx(theirs[key]), key


def test_percentile_of_nothing_is_missing() -> None:
    assert percentile_ms([], 50) is None
    assert percentile_ms([1.0, 2.0, 3.0], 50) == 2.0

"""Grading equations against true trajectories: textbook motions with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.reporter.equation_grading import (
    ACCURATE_PCT,
    BLAME_BOTH,
    BLAME_FIT,
    BLAME_NONE,
    BLAME_TRACK,
    blame,
    grade,
    summarise,
    track_rms_pct,
)
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.profiles import CLASS_NAMES

FRAMES, HORIZON, FPS = 16, 4, 8.0
TIMES = np.arange(FRAMES + HORIZON) / FPS


def _sample(family: str, seed: int = 0):  # type: ignore[no-untyped-def]
    return TrajectoryGenerator(frames=FRAMES, horizon=HORIZON, fps=FPS).sample(family, np.random.default_rng(seed))


@pytest.mark.parametrize("family", CLASS_NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_datasets_own_equations_get_their_family_and_parameters_back(family: str, seed: int) -> None:
    """The true equations, graded against their own trajectory: the family right, every physical
    parameter within the dataset's rounding, no error on any frame."""
    traj = _sample(family, seed)
    g = grade(traj.equations, true_family=family, true_params=traj.params, positions=traj.positions,
              times=traj.times, frames=FRAMES)
    assert g.family == family and g.right, g
    assert g.observed_rms_pct < 1e-6 and g.forecast_rms_pct < 1e-6
    for name, err in g.parameter_errors.items():
        limit = 0.1 if name in ("direction", "normal") else 2e-3  # degrees; relative
        assert err < limit, (name, err)
    assert set(g.parameter_errors) == {
        "linear": {"speed", "direction"}, "circular": {"radius", "period", "normal"},
        "helical": {"radius", "pitch", "normal"}, "parabolic": {"gravity"},
    }[family]


def test_a_textbook_circle_has_its_radius_period_and_normal_read_off_its_equation() -> None:
    # A circle of radius 2 in the x-z plane (normal along y), 1 turn per pi seconds.
    eqs = ("2*cos(2*t)", "1.5", "6 + 2*sin(2*t)")
    pos = np.stack([2 * np.cos(2 * TIMES), np.full_like(TIMES, 1.5), 6 + 2 * np.sin(2 * TIMES)], axis=1)
    params = {"radius": 2.0, "omega": 2.0, "normal": [0.0, -1.0, 0.0]}  # the sign of a normal does not count
    g = grade(eqs, true_family="circular", true_params=params, positions=pos, times=TIMES, frames=FRAMES)
    assert g.family == "circular"
    assert g.parameter_errors["radius"] < 1e-9 and g.parameter_errors["period"] < 1e-9
    assert g.parameter_errors["normal"] < 1e-6
    # Told the radius is 2.5: 20 % off.
    off = grade(eqs, true_family="circular", true_params={**params, "radius": 2.5}, positions=pos,
                times=TIMES, frames=FRAMES)
    assert off.parameter_errors["radius"] == pytest.approx(0.2)


def test_a_wrong_family_is_wrong_and_its_parameters_are_not_graded() -> None:
    traj = _sample("circular", 3)
    # A straight line through the first and last observed points: a linear answer to a circle.
    p0, p1 = traj.positions[0], traj.positions[FRAMES - 1]
    v = (p1 - p0) / traj.times[FRAMES - 1]
    eqs = tuple(f"{p0[k]:.6f} + {v[k]:.6f}*t" for k in range(3))
    g = grade(eqs, true_family="circular", true_params=traj.params, positions=traj.positions,
              times=traj.times, frames=FRAMES)
    assert g.family == "linear" and not g.family_right and not g.right
    assert g.parameter_errors == {}
    assert g.observed_rms_pct > ACCURATE_PCT


def test_a_slight_bend_is_not_a_parabola_but_a_real_one_is() -> None:
    pos = np.stack([TIMES, 2 * TIMES, 5 + 0 * TIMES], axis=1)
    line = ("t", "2*t + 0.0001*t**2", "5")  # t**2 moves the point by ~0.0006 units of ~5: negligible
    assert grade(line, true_family="linear", true_params={"velocity": [1, 2, 0]}, positions=pos,
                 times=TIMES, frames=FRAMES).family == "linear"
    drop = ("t", "2*t - 4.9*t**2", "5")
    pos_drop = np.stack([TIMES, 2 * TIMES - 4.9 * TIMES**2, 5 + 0 * TIMES], axis=1)
    g = grade(drop, true_family="parabolic", true_params={"gravity": 9.8}, positions=pos_drop,
              times=TIMES, frames=FRAMES)
    assert g.family == "parabolic" and g.parameter_errors["gravity"] < 1e-9


def test_rms_on_observed_and_extrapolated_frames_and_the_models_forecast_beside_it() -> None:
    pos = np.stack([TIMES, 0 * TIMES, 5 + 0 * TIMES], axis=1)  # extent: the x span
    extent = float(TIMES[-1])
    shifted = ("t + 0.1", "0", "5")  # 0.1 units off everywhere
    forecast = pos[FRAMES:] + np.array([0.0, 0.2, 0.0])
    g = grade(shifted, true_family="linear", true_params={"velocity": [1, 0, 0]}, positions=pos,
              times=TIMES, frames=FRAMES, forecast=forecast)
    assert g.observed_rms_pct == pytest.approx(0.1 / extent * 100)
    assert g.forecast_rms_pct == pytest.approx(0.1 / extent * 100)
    assert g.model_forecast_rms_pct == pytest.approx(0.2 / extent * 100)
    assert g.parameter_errors["speed"] < 1e-12 and g.parameter_errors["direction"] < 1e-6


def test_unparsable_equations_are_wrong_and_say_why() -> None:
    pos = np.stack([TIMES, TIMES, TIMES], axis=1)
    g = grade(("__import__('os')", "t", "t"), true_family="linear", true_params=None, positions=pos,
              times=TIMES, frames=FRAMES)
    assert g.family == "unparsable" and not g.right and "unparsable" in g.error
    assert math.isinf(g.observed_rms_pct)


@pytest.mark.parametrize("eqs", [("sqrt(t - 5)", "t", "t"), ("1/(t - 1)", "t", "t"), ("log(t)", "0", "1")])
def test_equations_odd_at_some_frames_are_graded_wrong_not_a_crash(eqs: tuple[str, str, str]) -> None:
    pos = np.stack([TIMES, TIMES, TIMES], axis=1)
    g = grade(eqs, true_family="linear", true_params={"velocity": [1, 1, 1]}, positions=pos, times=TIMES,
              frames=FRAMES)
    assert not g.right


def _g(right: bool):  # type: ignore[no-untyped-def]
    from services.reporter.equation_grading import EquationGrade

    return EquationGrade(family="linear", true_family="linear", observed_rms_pct=1.0 if right else 50.0)


def test_each_failure_from_pixels_is_blamed_on_the_stage_that_failed() -> None:
    assert blame(_g(True), _g(True), 20.0) == BLAME_NONE
    assert blame(_g(True), _g(False), 1.0) == BLAME_TRACK  # fine on the truth, not from the track
    assert blame(_g(False), _g(False), 1.0) == BLAME_FIT  # a good track, the fit fails anyway
    assert blame(_g(False), _g(False), 20.0) == BLAME_BOTH
    assert blame(None, _g(False), 1.0) == ""  # nothing to compare with
    assert blame(_g(False), _g(False), None) == ""


def test_track_error_and_the_summary_of_several_grades() -> None:
    obs = np.zeros((4, 3))
    assert track_rms_pct(obs + np.array([0.0, 0.3, 0.4]), obs, 10.0) == pytest.approx(5.0)
    s = summarise([_g(True), _g(True), _g(False), _g(True)])
    assert s is not None and s.clips == 4 and s.right_pct == 75.0 and s.family_right_pct == 100.0
    assert summarise([]) is None

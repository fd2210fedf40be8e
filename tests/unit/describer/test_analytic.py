"""The analytic backend recovers motion parameters and writes equations that score accurate.

Noise-free: every class, random 3D orientation, parameters within 1 %.

Noisy: Gaussian noise of sigma = 1 % of the extent on every coordinate (a position
estimate good to ~0.3 px when the path spans half of a 64 px frame). Tolerances:
- linear and parabolic fits are linear least squares, so the standard error of each
  coefficient is exactly sigma * sqrt(diag((X^T X)^-1)); the 3D error of velocity and
  acceleration must be within 4 such standard errors (per axis, so 4 * sqrt(3) for the
  vector): a tolerance from the estimator's own spread, not a tuned number.
- circle and helix (nonlinear): radius and angular speed within 5 %, plane normal
  within 3 degrees, axial speed within 5 standard errors of a slope fitted to the
  drift (sigma * sqrt(12 / n) / span). With 16 points the radius is averaged over 48
  coordinates, but ω trades off against the phase over < 1.5 turns; in 40 seeded
  draws the worst errors were 2.1 % (radius), 1.9 % (ω), 2.0 degrees (normal) and
  9 % of the axial speed (slow drifts, where 5 standard errors are ~11 %).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.describer.backends.analytic import AnalyticBackend
from services.describer.backends.base import Trajectory
from services.describer.fitting import fit_motion
from tests.unit.describer.kit import N_OBSERVED, make_trajectory
from trajlab.equations import parse_equation, score_equations

KINDS = ("linear", "circular", "helical", "parabolic")
SEEDS = range(6)


def _rel(a: object, b: object) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _angle_deg(a: object, b: object) -> float:
    c = abs(float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(min(1.0, c)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_noise_free_parameters_within_one_percent(kind: str, seed: int) -> None:
    tr = make_trajectory(kind, seed)
    fit = fit_motion(tr.observed_times, tr.observed)  # no prior: the points alone decide
    assert fit.family == kind
    p, q = fit.params, tr.params
    if kind == "linear":
        assert _rel(p["velocity"], q["velocity"]) < 0.01
        assert _rel(p["position_at_t0"], q["start"]) < 0.01
    elif kind == "parabolic":
        assert _rel(p["acceleration"], q["acceleration"]) < 0.01
        assert _rel(p["velocity_at_t0"], q["velocity"]) < 0.01
        assert _rel(p["position_at_t0"], q["start"]) < 0.01
    else:
        assert p["radius"] == pytest.approx(q["radius"], rel=0.01)
        assert p["angular_speed"] == pytest.approx(q["omega"], rel=0.01)
        assert p["period"] == pytest.approx(2 * math.pi / q["omega"], rel=0.01)
        assert _angle_deg(p["normal"], q["normal"]) < 0.5
        if kind == "circular":
            assert _rel(p["centre"], q["centre"]) < 0.01
        else:
            assert p["axial_speed"] == pytest.approx(q["axial_speed"], rel=0.01)
            assert _angle_deg(p["axis"], q["axis"]) < 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_noise_free_equations_score_accurate_including_the_forecast_frames(kind: str) -> None:
    backend = AnalyticBackend()
    for seed in SEEDS:
        tr = make_trajectory(kind, seed)
        d = backend.describe(Trajectory(tr.observed, tr.observed_times))
        for eq in d.equations:
            parse_equation(eq)  # canonical form passes the safe parser
        s = score_equations(d.equations, tr.times, tr.positions)  # 16 observed + 4 extrapolated frames
        assert s.accurate and s.normalized_rmse < 1e-4, (kind, seed, d.equations, s)


def _poly_se(times: np.ndarray, order: int, sigma: float) -> np.ndarray:
    x = np.vander(times, order + 1, increasing=True)
    return sigma * np.sqrt(np.diag(np.linalg.inv(x.T @ x)))


@pytest.mark.parametrize("kind", KINDS)
def test_noisy_parameters_within_justified_tolerance(kind: str) -> None:
    chosen = []
    for seed in range(10):
        tr = make_trajectory(kind, seed)
        sigma = 0.01 * tr.extent
        rng = np.random.default_rng(1000 + seed)
        obs = tr.observed + rng.normal(0.0, sigma, tr.observed.shape)
        fit = fit_motion(tr.observed_times, obs, predicted=kind)
        chosen.append(fit.family)
        if fit.family != kind:
            continue
        p, q = fit.params, tr.params
        if kind == "linear":
            se = _poly_se(tr.observed_times, 1, sigma)
            assert np.linalg.norm(np.asarray(p["velocity"]) - q["velocity"]) <= 4 * math.sqrt(3) * se[1]
        elif kind == "parabolic":
            se = _poly_se(tr.observed_times, 2, sigma)
            assert (
                np.linalg.norm(np.asarray(p["acceleration"]) - q["acceleration"])
                <= 4 * math.sqrt(3) * 2 * se[2]
            )
            assert np.linalg.norm(np.asarray(p["velocity_at_t0"]) - q["velocity"]) <= 4 * math.sqrt(3) * se[1]
        else:
            assert p["radius"] == pytest.approx(q["radius"], rel=0.05)
            assert p["angular_speed"] == pytest.approx(q["omega"], rel=0.05)
            assert _angle_deg(p["normal"], q["normal"]) < 3.0
            if kind == "helical":
                span = float(np.ptp(tr.observed_times))
                slope_se = sigma * math.sqrt(12 / N_OBSERVED) / span
                assert abs(p["axial_speed"] - q["axial_speed"]) <= 5 * slope_se
    # With the right class as prior, noise of 1 % rarely tips the choice.
    assert chosen.count(kind) >= 9, chosen


def test_prior_settles_near_ties_but_does_not_overrule_a_clear_fit() -> None:
    tr = make_trajectory("circular", 3)
    assert fit_motion(tr.observed_times, tr.observed, predicted="linear").family == "circular"
    assert fit_motion(tr.observed_times, tr.observed, predicted="parabolic").family == "circular"
    # A helix with no drift is a circle; the prior "helical" must not add a spurious drift.
    assert fit_motion(tr.observed_times, tr.observed, predicted="helical").family == "circular"


def test_description_names_kind_numbers_and_next_position() -> None:
    tr = make_trajectory("circular", 1)
    forecast = tr.positions[N_OBSERVED:]
    d = AnalyticBackend().describe(
        Trajectory(
            tr.observed, tr.observed_times, forecast, tr.times[N_OBSERVED:], predicted_class="circular"
        )
    )
    assert d.described_class == "circular"
    text = d.description
    assert text.startswith("Circular motion")
    assert f"radius {tr.params['radius']:.3g} units" in text
    assert f"period {2 * math.pi / tr.params['omega']:.3g} s" in text
    assert "Next, at t = 2 s" in text  # frame 16 at 8 fps
    assert "forecast ends at" in text


def test_description_flags_a_disagreeing_prediction() -> None:
    tr = make_trajectory("linear", 2)
    d = AnalyticBackend().describe(Trajectory(tr.observed, tr.observed_times, predicted_class="helical"))
    assert d.described_class == "linear"
    assert "predicted helical" in d.description


def test_deterministic() -> None:
    tr = make_trajectory("helical", 4)
    traj = Trajectory(tr.observed, tr.observed_times)
    a, b = AnalyticBackend().describe(traj), AnalyticBackend().describe(traj)
    assert a == b


def test_three_points_still_answer() -> None:
    t = np.array([0.0, 0.5, 1.0])
    p = np.array([[0.0, 0.0, 5.0], [1.0, 0.5, 5.0], [2.0, 1.0, 5.0]])
    d = AnalyticBackend().describe(Trajectory(p, t))
    assert d.described_class == "linear"
    assert score_equations(d.equations, t, p).accurate


@pytest.mark.parametrize("kind", KINDS)
def test_windows_far_from_time_zero_keep_equations_small_and_exact(kind: str) -> None:
    tr = make_trajectory(kind, 1)
    t = tr.times + 86_400.0  # a day into a recording
    d = AnalyticBackend().describe(Trajectory(tr.observed, t[:N_OBSERVED]))
    assert all("(t - 86400.938)" in eq or "t" not in eq for eq in d.equations), d.equations
    assert score_equations(d.equations, t, tr.positions).normalized_rmse < 1e-4


def test_parabolic_description_gives_direction_words_and_the_apex() -> None:
    tr = make_trajectory("parabolic", 2)
    v, g = tr.params["velocity"], tr.params["acceleration"]
    t_apex = -float(np.dot(v, g)) / float(np.dot(g, g))
    d = AnalyticBackend().describe(Trajectory(tr.observed, tr.observed_times))
    assert f"apex (turning point against the acceleration) is at t = {t_apex:.3g} s" in d.description
    axis = int(np.argmax(np.abs(g)))
    word = (("right", "left"), ("up", "down"), ("away from the camera", "toward the camera"))[axis][
        int(g[axis] < 0)
    ]
    assert f"units/s² mostly {word}" in d.description


def test_a_straight_path_with_tracker_jitter_reads_as_linear_not_as_a_tight_helix() -> None:
    # A tracker's frame-to-frame error on a straight path: small (0.5 % of the extent) and
    # fast (about 4 frames per cycle), which a helix of 13 coefficients fits far better than
    # a line of 6 does; the describer must still call it a line.
    t = np.arange(16) / 8.0
    line = np.array([0.2, -0.1, 4.0]) + np.outer(t, [1.0, 0.3, -0.4])
    extent = float(np.max(line.max(0) - line.min(0)))
    wobble = 0.005 * extent * np.stack([np.cos(12.0 * t), np.sin(12.0 * t), np.zeros_like(t)], axis=1)
    fit = fit_motion(t, line + wobble, predicted="linear")
    assert fit.family == "linear", fit.scores


def test_a_tight_helix_well_above_jitter_still_reads_as_helical() -> None:
    # Radius 5 % of the extent: small beside the drift, but a real turn, not jitter.
    t = np.arange(16) / 8.0
    drift = np.outer(t, [0.0, 0.0, 1.5])
    extent = 3.0
    r = 0.05 * extent
    pts = drift + np.stack([r * np.cos(3.0 * t), r * np.sin(3.0 * t), np.zeros_like(t)], axis=1)
    fit = fit_motion(t, pts, predicted=None)
    assert fit.family == "helical", fit.scores

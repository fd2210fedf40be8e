"""The analytic backend on the dataset's own trajectories (trajlab.data.TrajectoryGenerator):
the class and the generating parameters come back, and the equations score accurate on
every frame, the 4 forecast frames included."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.describer.backends.analytic import AnalyticBackend
from services.describer.backends.base import Trajectory
from trajlab.data import TrajectoryGenerator
from trajlab.equations import score_equations
from trajlab.profiles import CLASS_NAMES


@pytest.mark.parametrize("label", range(4))
def test_generator_trajectories_are_recovered(label: int) -> None:
    gen = TrajectoryGenerator()
    rng = np.random.default_rng(100 + label)
    backend = AnalyticBackend()
    for _ in range(8):
        tr = gen.sample(label, rng)
        obs = Trajectory(tr.positions[: gen.frames], tr.times[: gen.frames])
        fit = backend.fit(obs)
        assert fit.family == CLASS_NAMES[label]
        p, q = fit.params, tr.params
        if label == 0:
            np.testing.assert_allclose(p["velocity"], q["velocity"], rtol=0.01, atol=1e-3)
        elif label == 3:
            np.testing.assert_allclose(p["velocity_at_t0"], q["velocity"], rtol=0.01, atol=1e-3)
            g = q["gravity"] * np.asarray(q["gravity_direction"])
            np.testing.assert_allclose(p["acceleration"], g, rtol=0.01, atol=1e-3)
        else:
            assert p["radius"] == pytest.approx(q["radius"], rel=0.01)
            assert p["angular_speed"] == pytest.approx(q["omega"], rel=0.01)
            if label == 2:
                assert p["axial_speed"] == pytest.approx(q["axial_speed"], rel=0.01)
                assert p["pitch"] == pytest.approx(q["pitch"], rel=0.01)
                assert abs(float(np.dot(p["axis"], q["axis"]))) == pytest.approx(1.0, abs=1e-4)
            else:
                assert abs(float(np.dot(p["normal"], q["normal"]))) == pytest.approx(1.0, abs=1e-4)
        d = backend.describe(obs)
        s = score_equations(d.equations, tr.times, tr.positions)
        assert s.accurate and s.normalized_rmse < 1e-3, (tr.equations, d.equations)
        # The dataset's own equation strings pass the same safe parser and score exact.
        assert score_equations(tr.equations, tr.times, tr.positions).normalized_rmse < 1e-9
        assert math.isfinite(s.normalized_rmse)

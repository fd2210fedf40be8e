"""The generator: exact equations, geometry of each class, everything stays in view."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trajlab.data import Camera, TrajectoryGenerator, evaluate_equations, project
from trajlab.profiles import CLASS_NAMES


def _samples(gen: TrajectoryGenerator, label: int, n: int = 12) -> list:
    return [gen.sample(label, np.random.default_rng(1000 * label + i)) for i in range(n)]


@pytest.fixture(scope="module")
def gen() -> TrajectoryGenerator:
    return TrajectoryGenerator(frames=16, horizon=4, fps=8.0, camera=Camera(64, 64))


@pytest.mark.parametrize("label", range(4))
def test_equations_parse_and_reproduce_every_position(gen: TrajectoryGenerator, label: int) -> None:
    for tr in _samples(gen, label, 8):
        assert tr.kind == CLASS_NAMES[label]
        got = evaluate_equations(tr.equations, tr.times)
        np.testing.assert_allclose(got, tr.positions, rtol=0, atol=1e-9)


@pytest.mark.parametrize("label", range(4))
def test_future_positions_are_the_equation_at_future_times(gen: TrajectoryGenerator, label: int) -> None:
    tr = _samples(gen, label, 3)[0]
    future_t = np.arange(16, 20) / 8.0  # seconds: the 4 frames after the 16 observed
    np.testing.assert_allclose(evaluate_equations(tr.equations, future_t), tr.positions[16:], atol=1e-9)
    assert tr.times[16] == pytest.approx(2.0)


@pytest.mark.parametrize("size", [64, 32, 24])
def test_objects_stay_in_view_and_in_depth(size: int) -> None:
    cam = Camera(size, size)
    gen = TrajectoryGenerator(camera=cam, margin_px=2.0)
    for label in range(4):
        for tr in _samples(gen, label, 10):
            z = tr.positions[:, 2]
            assert z.min() >= 4.0 and z.max() <= 10.0
            u, v = project(tr.positions, cam)
            r = cam.focal_px * gen.sphere_radius / z
            assert (u - r >= 2.0 - 1e-6).all() and (u + r <= size - 2.0 + 1e-6).all()
            assert (v - r >= 2.0 - 1e-6).all() and (v + r <= size - 2.0 + 1e-6).all()
            assert tr.extent >= 0.75


def test_each_class_has_its_geometry(gen: TrajectoryGenerator) -> None:
    dt = 1 / 8.0
    for tr in _samples(gen, 0, 5):  # linear: zero second difference, velocity as stated
        np.testing.assert_allclose(np.diff(tr.positions, 2, axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(tr.positions[1] - tr.positions[0], np.array(tr.params["velocity"]) * dt)
    for tr in _samples(gen, 3, 5):  # parabolic: constant acceleration (0, -g, 0)
        acc = np.diff(tr.positions, 2, axis=0) / dt**2
        np.testing.assert_allclose(acc, np.tile([0, -tr.params["gravity"], 0], (len(acc), 1)), atol=1e-6)
        assert tr.params["gravity"] > 0
    for tr in _samples(gen, 1, 5):  # circular: on a circle of the stated radius, in a plane
        d = np.linalg.norm(tr.positions - np.array(tr.params["center"]), axis=1)
        np.testing.assert_allclose(d, tr.params["radius"], atol=5e-4)
        centred = tr.positions - tr.positions.mean(axis=0)
        assert np.linalg.svd(centred, compute_uv=False)[2] < 1e-3  # planar
        # and it sweeps more than half a turn over the clip
        assert tr.params["omega"] * (19 / 8.0) > np.pi
    for tr in _samples(gen, 2, 5):  # helical: circle around the axis once the drift is removed
        drift = np.array(tr.params["drift"])
        rel = tr.positions - np.array(tr.params["center"]) - drift * tr.times[:, None]
        np.testing.assert_allclose(np.linalg.norm(rel, axis=1), tr.params["radius"], atol=5e-4)
        assert abs(np.dot(rel[3] - rel[0], tr.params["axis"])) < 1e-3  # the circle is normal to the axis
        assert np.linalg.norm(drift) * (19 / 8.0) >= 1.5 - 1e-3


def test_same_generator_seed_same_trajectory(gen: TrajectoryGenerator) -> None:
    a = gen.sample("helical", np.random.default_rng(7))
    b = gen.sample("helical", np.random.default_rng(7))
    c = gen.sample("helical", np.random.default_rng(8))
    assert a.equations == b.equations and np.array_equal(a.positions, b.positions)
    assert a.equations != c.equations


def test_unknown_label_is_refused(gen: TrajectoryGenerator) -> None:
    with pytest.raises(ValueError, match="label"):
        gen.sample(7, np.random.default_rng(0))
    with pytest.raises(ValueError):
        gen.sample("spiral", np.random.default_rng(0))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    label=st.integers(0, 3),
    size=st.sampled_from([16, 24, 32, 64, 96]),
    fov=st.sampled_from([45.0, 60.0, 90.0]),
    frames=st.integers(4, 24),
    fps=st.sampled_from([4.0, 8.0, 15.0]),
)
def test_any_seed_any_camera_stays_in_view_and_is_exact(
    seed: int, label: int, size: int, fov: float, frames: int, fps: float
) -> None:
    cam = Camera(size, size, fov)
    gen = TrajectoryGenerator(frames=frames, horizon=4, fps=fps, camera=cam)
    tr = gen.sample(label, np.random.default_rng(seed))
    z = tr.positions[:, 2]
    assert z.min() >= 4.0 and z.max() <= 10.0
    u, v = project(tr.positions, cam)
    r = cam.focal_px * gen.sphere_radius / z
    assert (np.minimum(u, v) - r >= 1.0 - 1e-6).all() and (np.maximum(u, v) + r <= size - 1.0 + 1e-6).all()
    # The equations are the positions: evaluate them with Python's own float arithmetic.
    env = {"cos": np.cos, "t": tr.times}
    for a in range(3):
        np.testing.assert_allclose(eval(tr.equations[a], env), tr.positions[:, a], atol=1e-9)

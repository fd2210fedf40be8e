"""The track's principal spreads: what tells a flat circle from a helix, read by the track classifier."""

from __future__ import annotations

import numpy as np
import torch

from services.trainer.branch import create_branch_model
from services.trainer.model_args import ModelArgs
from services.trainer.perception.motion import (
    SMOOTHING,
    motion_features,
    motion_features_dim,
    moving_average,
    principal_spreads,
)
from trajlab.data.trajectories import TrajectoryGenerator


def _numpy_spreads(world: np.ndarray) -> np.ndarray:
    x = world - world.mean(axis=1, keepdims=True)
    ev = np.linalg.eigvalsh(np.einsum("nti,ntj->nij", x, x) / world.shape[1])  # ascending
    return np.sqrt(np.clip(np.stack([ev[:, 1] / ev[:, 2], ev[:, 0] / ev[:, 2]], axis=1), 0, 1))


def test_the_closed_form_agrees_with_numpys_eigenvalues_on_any_track() -> None:
    rng = np.random.default_rng(0)
    tracks = rng.normal(size=(200, 16, 3)) * rng.uniform(0.1, 3.0, size=(200, 1, 3)) + rng.normal(size=(200, 1, 3)) * 5
    line = np.linspace(0, 1, 16)[None, :, None] * np.array([1.0, -2.0, 0.5])[None, None]
    point = np.full((1, 16, 3), 4.0)
    world = np.concatenate([tracks, line, point]).astype(np.float32)
    got = principal_spreads(torch.from_numpy(world)).numpy()
    np.testing.assert_allclose(got[:-2], _numpy_spreads(world[:-2].astype(np.float64)), atol=2e-3)
    assert np.all(got[-2] < 1e-3)  # a line: no second or third direction
    assert np.all(np.isfinite(got[-1]))  # a point (a hidden, static object): defined


def test_on_the_generators_paths_circles_are_flat_helices_are_not_and_lines_are_thin() -> None:
    gen = TrajectoryGenerator(frames=16, horizon=4)
    rng = np.random.default_rng(1)
    by_class = {
        c: principal_spreads(
            torch.tensor(np.stack([gen.sample(c, rng).positions[:16] for _ in range(100)]), dtype=torch.float32)
        ).numpy()
        for c in range(4)
    }
    linear, circular, helical, parabolic = (by_class[c] for c in range(4))
    assert linear.max() < 1e-3
    assert circular[:, 1].max() < 1e-3 and circular[:, 0].min() > 0.2  # flat, but a turn
    assert helical[:, 1].min() > 0.15  # the drift along the axis lifts it out of any plane
    assert parabolic[:, 1].max() < 1e-3  # a parabola lies in a plane too


def test_the_motion_features_carry_them_last_only_when_asked() -> None:
    world = torch.randn(5, 16, 3)
    ones = torch.ones(3)
    plain = motion_features(world, ones, ones)
    with_spreads = motion_features(world, ones, ones, spreads=True)
    assert plain.shape == (5, motion_features_dim(16)) and with_spreads.shape == (5, motion_features_dim(16, True))
    assert torch.equal(with_spreads[:, : plain.shape[1]], plain)
    spreads = torch.cat([principal_spreads(world), principal_spreads(moving_average(world, SMOOTHING))], 1)
    assert torch.allclose(with_spreads[:, plain.shape[1] :], spreads)


def test_the_moving_average_keeps_a_steady_drift_and_takes_off_jitter() -> None:
    t = torch.arange(16.0)
    drift = torch.stack([t, 0 * t, 0 * t], 1)[None]
    assert torch.allclose(moving_average(drift, 5)[:, 2:-2], drift[:, 2:-2])  # linear: unchanged inside
    jitter = torch.randn(200, 16, 3, generator=torch.Generator().manual_seed(0))
    assert moving_average(jitter, 5)[:, 2:-2].std() < 0.5 * jitter.std()


def test_smoothed_spreads_tell_a_jittered_circle_from_a_helix() -> None:
    """A read track's depth jitter lifts a circle out of its plane; over 5 frames it averages out."""
    gen = TrajectoryGenerator(frames=16, horizon=4)
    rng = np.random.default_rng(2)
    g = torch.Generator().manual_seed(2)

    def read(c: int) -> torch.Tensor:  # true paths with 8 % depth jitter per frame
        world = torch.tensor(np.stack([gen.sample(c, rng).positions[:16] for _ in range(100)]), dtype=torch.float32)
        return world * torch.cat([torch.ones(100, 16, 2), 1 + 0.08 * torch.randn(100, 16, 1, generator=g)], 2)

    circles, helices = read(1), read(2)
    raw_gap = principal_spreads(helices)[:, 1].min() - principal_spreads(circles)[:, 1].max()
    smooth_gap = (principal_spreads(moving_average(helices, 5))[:, 1].min()
                  - principal_spreads(moving_average(circles, 5))[:, 1].max())
    assert smooth_gap > raw_gap


def _args(**kw) -> ModelArgs:  # type: ignore[no-untyped-def]
    return ModelArgs(encoder="i3d", enhancement="none", frames=8, height=32, width=32, horizon=2,
                     encoder_args={"channels": (4, 8, 8)}, track=True, track_classifier=True,
                     focal_px=27.7, **kw)


def test_a_model_with_them_reads_four_more_features_and_exports_with_parity(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.trainer.export import check_parity, export_onnx

    torch.manual_seed(0)
    without = create_branch_model(_args())
    model = create_branch_model(_args(track_spreads=True)).eval()
    assert model.track_classifier.net[0].in_features == without.track_classifier.net[0].in_features + 4
    assert model.perception.summary[0].in_features == without.perception.summary[0].in_features + 4
    clips = torch.randn(3, 3, 8, 32, 32)
    path = export_onnx(model, tmp_path / "model.onnx", clips[:2])
    assert check_parity(model, path, clips.numpy()) < 1e-4


def test_training_through_the_motion_features_keeps_finite_gradients_on_flat_and_straight_tracks() -> None:
    """The summary reads the motion features of a track that has gradients; the spreads' square
    roots and arc cosine must not send NaN back into it (a NaN there wrecked a first seed run)."""
    t = torch.linspace(0, 1, 16)
    line = torch.stack([t, 2 * t, 0 * t], 1)
    circle = torch.stack([torch.cos(3 * t), torch.sin(3 * t), 0 * t], 1)
    world = torch.stack([line, circle]).requires_grad_(True)
    feats = motion_features(world, torch.ones(3), torch.ones(3), spreads=True)
    feats.sum().backward()
    assert world.grad is not None and torch.isfinite(world.grad).all()

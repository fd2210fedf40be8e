"""The renderer: spheres land where the camera says, with the right size; distractors where configured."""

from __future__ import annotations

import numpy as np
import pytest

from trajlab.data import (
    Camera,
    RenderSettings,
    apparent_radius,
    project,
    render_batch,
    render_clip,
    render_clip_fullframe,
)

FAR = np.array([1e3, 1e3, 5.0])  # projects far outside the image: nothing is drawn


def _settings(**kw: object) -> RenderSettings:
    base: dict[str, object] = {"camera": Camera(64, 64), "background_noise": 8.0}
    base.update(kw)
    return RenderSettings(**base)  # type: ignore[arg-type]


def _sphere_mask(positions: np.ndarray, settings: RenderSettings, seed: int = 3) -> np.ndarray:
    """Pixels the sphere changed: same seed (same background), sphere there vs out of view."""
    with_sphere, _ = render_clip(positions, settings, np.random.default_rng(seed))
    without, _ = render_clip(np.tile(FAR, (len(positions), 1)), settings, np.random.default_rng(seed))
    return (with_sphere != without).any(axis=-1)


@pytest.mark.parametrize(
    "point",
    [(0.0, 0.0, 5.0), (0.83, -0.41, 4.3), (-1.7, 1.13, 7.9), (2.9, 2.2, 9.6), (0.123, -0.456, 6.25)],
)
def test_sphere_lands_at_its_projection_with_the_expected_radius(point: tuple[float, float, float]) -> None:
    s = _settings()
    pos = np.array([point])
    mask = _sphere_mask(pos, s)[0]
    rows, cols = np.nonzero(mask)
    u_true, v_true = project(np.array(point), s.camera)
    # Pixel (i, j) covers [j, j+1) x [i, i+1): its centre is (j + 0.5, i + 0.5).
    assert abs((cols + 0.5).mean() - u_true) < 0.5
    assert abs((rows + 0.5).mean() - v_true) < 0.5
    r = float(apparent_radius(point[2], s.sphere_radius, s.camera))
    assert r == pytest.approx(s.camera.focal_px * 0.45 / point[2])
    # Anti-aliased edge: the pixels touched are those within r + 0.5 of the centre.
    assert abs(np.sqrt(mask.sum() / np.pi) - (r + 0.5)) < 0.5


def test_nearer_sphere_is_larger_and_brighter() -> None:
    s = _settings(background_noise=0.0)
    near, far = np.array([[0.0, 0.0, 4.5]]), np.array([[0.0, 0.0, 9.0]])
    m_near, m_far = _sphere_mask(near, s)[0], _sphere_mask(far, s)[0]
    assert m_near.sum() > 3 * m_far.sum()
    clip_near, _ = render_clip(near, s, np.random.default_rng(3))
    clip_far, _ = render_clip(far, s, np.random.default_rng(3))
    assert clip_near[0][m_near].max() > clip_far[0][m_far].max()


def test_focal_length_follows_the_field_of_view() -> None:
    cam = Camera(64, 64, 60.0)
    assert cam.focal_px == pytest.approx(32 / np.tan(np.radians(30)))
    u, v = project(np.array([1.0, 1.0, 4.0]), cam)
    assert u == pytest.approx(32 + cam.focal_px / 4) and v == pytest.approx(32 - cam.focal_px / 4)


def test_bbox_renderer_equals_full_frame_reference() -> None:
    s = _settings(clutter=3, transients=2, camera_jitter=0.6)
    pos = np.column_stack([np.linspace(-1, 1, 12), np.linspace(0.5, -0.5, 12), np.linspace(4.2, 9.0, 12)])
    for seed in range(4):
        a, _ = render_clip(pos, s, np.random.default_rng(seed))
        b, _ = render_clip_fullframe(pos, s, np.random.default_rng(seed))
        assert a.dtype == np.uint8 and a.shape == (12, 64, 64, 3)
        assert np.array_equal(a, b)


def test_batch_render_equals_clip_by_clip() -> None:
    s = _settings(clutter=2, transients=2, camera_jitter=0.5)
    pos = np.stack([np.tile([0.3 * k - 1, 0.2, 5 + k], (10, 1)) for k in range(5)])
    batch = render_batch(pos, s, [np.random.default_rng(k) for k in range(5)])
    for k in range(5):
        one, _ = render_clip(pos[k], s, np.random.default_rng(k))
        assert np.array_equal(batch[k], one)


def test_clutter_appears_where_configured_and_is_static() -> None:
    pos = np.tile([0.0, 0.0, 6.0], (10, 1))
    base, info0 = render_clip(pos, _settings(clutter=0), np.random.default_rng(11))
    clut, info = render_clip(pos, _settings(clutter=3), np.random.default_rng(11))
    assert info0.clutter == [] and len(info.clutter) == 3
    diff = (base != clut).any(axis=-1)  # (T, H, W)
    assert diff.any()
    assert (diff == diff[0]).all()  # static: the same pixels on every frame
    allowed = np.zeros((64, 64), dtype=bool)
    ii, jj = np.mgrid[0:64, 0:64]
    for c in info.clutter:
        box = (np.abs(jj + 0.5 - c["u"]) <= c["size"] + 1) & (np.abs(ii + 0.5 - c["v"]) <= c["size"] + 1)
        # each item shows up (unless the sphere happens to cover it entirely)
        assert (diff[0] & box).any(), c
        allowed |= box
    assert not (diff[0] & ~allowed).any()  # and nothing changes outside their boxes


def test_transients_appear_and_vanish_mid_clip() -> None:
    T = 16
    pos = np.tile([0.0, -2.0, 9.0], (T, 1))
    for seed in range(5):
        base, _ = render_clip(pos, _settings(transients=0), np.random.default_rng(seed))
        with_t, info = render_clip(pos, _settings(transients=2), np.random.default_rng(seed))
        assert len(info.transients) == 2
        changed = (base != with_t).any(axis=(1, 2, 3))  # per frame
        shown = np.zeros(T, dtype=bool)
        for tr in info.transients:
            assert 1 <= tr["first"] <= tr["last"] <= T - 2
            shown[tr["first"] : tr["last"] + 1] = True
        assert not changed[0] and not changed[-1]  # absent on the first and last frames
        assert (changed == shown).all()  # visible exactly on their frames


def test_no_distractors_when_zero() -> None:
    """With clutter = transients = 0 and the sphere out of view, every frame is the same background."""
    s = _settings(clutter=0, transients=0)
    clip, info = render_clip(np.tile(FAR, (12, 1)), s, np.random.default_rng(3))
    assert info.clutter == [] and info.transients == []
    assert (clip == clip[0]).all()
    # while with them, something appears on some frames and not on others
    clip2, _ = render_clip(
        np.tile(FAR, (12, 1)), _settings(clutter=0, transients=3), np.random.default_rng(3)
    )
    assert not (clip2 == clip2[0]).all()


def test_camera_jitter_shifts_the_whole_view() -> None:
    s = _settings(camera_jitter=1.0)
    pos = np.tile([0.0, 0.0, 6.0], (16, 1))
    clip, info = render_clip(pos, s, np.random.default_rng(2))
    assert np.abs(info.shifts).max() >= 1  # some frames moved
    u0, v0 = project(pos[0], s.camera)
    np.testing.assert_allclose(info.centers[:, 0], u0 + info.shifts[:, 0])
    np.testing.assert_allclose(info.centers[:, 1], v0 + info.shifts[:, 1])
    # A frame shifted by (du, dv) equals the unshifted frame moved by (du, dv) (away from borders/sphere).
    t = int(np.flatnonzero(np.abs(info.shifts).sum(axis=1) > 0)[0])
    t0 = int(np.flatnonzero(np.abs(info.shifts).sum(axis=1) == 0)[0])
    du, dv = info.shifts[t]
    a = clip[t][8 + dv : 20 + dv, 8 + du : 20 + du]
    b = clip[t0][8:20, 8:20]
    assert np.array_equal(a, b)

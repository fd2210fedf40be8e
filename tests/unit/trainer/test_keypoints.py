"""Spatial-softmax keypoints: sub-pixel positions of a feature map's peak and the input there, in i3d and ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.branch import create_branch_model
from services.trainer.encoders.i3d import create_i3d
from services.trainer.encoders.keypoints import SpatialSoftmaxKeypoints
from services.trainer.model_args import ModelArgs


def _blob(frames: int, size: int, centres: list[tuple[float, float]], radius: float) -> torch.Tensor:
    """(1, 1, T, H, W): a disc of ones per frame, centred at (x, y) in pixels."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = torch.zeros(1, 1, frames, size, size)
    for t, (cx, cy) in enumerate(centres):
        out[0, 0, t] = (((xx - cx) ** 2 + (yy - cy) ** 2) <= radius**2).float()
    return out


def _peaked(layer: SpatialSoftmaxKeypoints, scale: float) -> SpatialSoftmaxKeypoints:
    with torch.no_grad():
        layer.maps.weight.fill_(scale)
        layer.maps.bias.zero_()
    return layer


def test_each_frames_keypoint_is_where_the_object_is_to_a_fraction_of_a_pixel() -> None:
    """A map that is the object's disc, sharpened: the keypoint's (u, v) is the disc's centre
    (2.6 and 21.4 pixels are between pixel centres), in [-1, 1] across the frame."""
    size, centres = 32, [(5.0, 7.0), (20.5, 11.0), (26.0, 21.4)]
    layer = _peaked(SpatialSoftmaxKeypoints(1, 1, frames=3, height=size, width=size), scale=30.0)
    out = layer(_blob(3, size, centres, radius=3.0)).reshape(3, 3)  # per frame: u, v, spread
    to_px = (size - 1) / 2.0
    got = (out[:, :2] + 1.0) * to_px
    np.testing.assert_allclose(got.detach().numpy(), np.array(centres), atol=0.35)


def test_the_spread_follows_the_objects_apparent_size() -> None:
    """A larger disc (a nearer object) spreads the distribution more: what depth is read from."""
    layer = _peaked(SpatialSoftmaxKeypoints(1, 1, frames=1, height=32, width=32), scale=30.0)
    small = layer(_blob(1, 32, [(16.0, 16.0)], radius=2.0))[0, 2]
    large = layer(_blob(1, 32, [(16.0, 16.0)], radius=6.0))[0, 2]
    assert large > 2.0 * small


def test_the_input_is_read_where_the_keypoint_is() -> None:
    """With input channels, each keypoint also returns the input averaged under its weights: a dim
    object (a far one, to the renderer) reads dim, a bright one bright, whatever the background."""
    size = 32
    disc = _blob(2, size, [(8.0, 8.0), (22.0, 20.0)], radius=3.0)
    brightness = torch.tensor([0.3, 0.9]).reshape(1, 1, 2, 1, 1)
    inputs = torch.cat([disc * brightness + 0.05, torch.full_like(disc, 0.5)], dim=1)  # (1, 2, T, H, W)
    layer = _peaked(SpatialSoftmaxKeypoints(1, 1, frames=2, height=size, width=size, input_channels=2), 30.0)
    out = layer(disc, inputs).reshape(2, 5)  # per frame: u, v, spread, channel 0, channel 1
    np.testing.assert_allclose(out[:, 3].detach().numpy(), [0.35, 0.95], atol=0.02)
    np.testing.assert_allclose(out[:, 4].detach().numpy(), [0.5, 0.5], atol=1e-5)
    with pytest.raises(ValueError, match="input channels"):
        layer(disc)


def test_i3d_appends_keypoints_to_its_pooled_features_and_exports_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """keypoints K adds K * T * (3 + C) features; the branch trains through them and its ONNX
    export gives the same answers as PyTorch."""
    from services.trainer.export import check_parity, export_onnx

    plain = create_i3d(in_channels=3, channels=(4, 8, 8), frames=8, height=32, width=32)
    enc = create_i3d(in_channels=3, channels=(4, 8, 8), frames=8, height=32, width=32, keypoints=2)
    assert enc.out_dim == plain.out_dim + 2 * 8 * (3 + 3)
    assert enc(torch.randn(2, 3, 8, 32, 32)).pooled.shape == (2, enc.out_dim)
    args = ModelArgs(encoder="i3d", enhancement="none", frames=8, height=32, width=32, horizon=2,
                     encoder_args={"channels": (4, 8, 8), "keypoints": 2}, track=False)
    model = create_branch_model(args)
    model(torch.randn(2, 3, 8, 32, 32)).forecast.sum().backward()
    assert model.encoder.keypoints.maps.weight.grad.abs().sum() > 0
    model.eval()
    clips = torch.randn(3, 3, 8, 32, 32)
    path = export_onnx(model, tmp_path / "model.onnx", clips[:2])
    assert check_parity(model, path, clips.numpy()) < 1e-4


@pytest.mark.parametrize("keypoints", [-1])
def test_a_negative_keypoint_count_is_refused_with_the_field_named(keypoints: int) -> None:
    with pytest.raises(ValueError, match="keypoints"):
        create_i3d(in_channels=3, channels=(4, 8, 8), frames=8, height=32, width=32, keypoints=keypoints)

"""The position head: a branch without the track perception learns where the object is, and forecasts from it."""

from __future__ import annotations

import torch

from services.trainer.branch import ExportWrapper, create_branch_model
from services.trainer.losses import combined_loss, position_target
from services.trainer.model_args import ModelArgs


def _args(**kw) -> ModelArgs:  # type: ignore[no-untyped-def]
    return ModelArgs(encoder="i3d", enhancement="none", frames=8, height=32, width=32, horizon=2,
                     encoder_args={"channels": (4, 8, 8)}, **kw)


def test_the_head_is_built_only_without_the_track_perception_and_only_when_asked() -> None:
    assert create_branch_model(_args(track=False)).position is None
    assert create_branch_model(_args(track=False, position_head=True)).position is not None
    assert create_branch_model(
        _args(track=True, position_head=True, focal_px=27.7, object_radius=0.45)
    ).position is None


def test_the_true_positions_train_the_encoder_through_the_head_and_the_loss_names_the_term() -> None:
    torch.manual_seed(0)
    model = create_branch_model(_args(track=False, position_head=True))
    model.set_forecast_stats(torch.tensor([0.0, 0.0, 5.0]).repeat(2, 1), torch.tensor([1.0, 1.0, 2.0]).repeat(2, 1))
    observed = torch.tensor([0.5, -1.0, 7.0]).repeat(2, 8, 1)  # (N, T, 3) world units
    target = position_target(model, observed)
    assert torch.allclose(target[0, 0], torch.tensor([0.5, -1.0, 1.0]))
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.positions is not None and out.positions.shape == (2, 8, 3)
    with_head, parts = combined_loss(out, torch.tensor([0, 1]), torch.zeros(2, 2, 3), forecast_weight=1.0,
                                     aux_weight=0.1, track_weight=5.0, positions=target)
    without, _ = combined_loss(out, torch.tensor([0, 1]), torch.zeros(2, 2, 3), forecast_weight=1.0,
                               aux_weight=0.1, track_weight=5.0)
    assert torch.isclose(with_head - without, 5.0 * parts["position"])
    with_head.backward()
    assert model.encoder.blocks[0][0].weight.grad.abs().sum() > 0


def test_the_forecast_is_the_heads_correction_of_an_extrapolation_of_the_read_track() -> None:
    """A model whose position head reads a straight track at constant speed forecasts that line
    further (the prior), before any training of its forecast head."""
    torch.manual_seed(0)
    model = create_branch_model(_args(track=False, position_head=True, forecast_prior="affine")).eval()
    assert model.extrapolate is not None and model.track_classifier is None
    with torch.no_grad():  # the head reads x = t (frames 0..7), y = z = 0, whatever the clip
        model.position.weight.zero_()
        model.position.bias.copy_(torch.stack([torch.arange(8.0), torch.zeros(8), torch.zeros(8)], 1).reshape(-1))
        for p in model.heads["forecast"].parameters():
            p.zero_()
        out = model(torch.randn(2, 3, 8, 32, 32))
    forecast = model.to_world(out.forecast)
    assert torch.allclose(forecast[0, :, 0], torch.tensor([8.0, 9.0]), atol=1e-4)


def test_the_served_outputs_are_the_three_of_a_model_without_a_track_and_onnx_agrees(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from services.trainer.export import check_parity, export_onnx

    model = create_branch_model(_args(track=False, position_head=True)).eval()
    clips = torch.randn(3, 3, 8, 32, 32)
    assert len(ExportWrapper(model)(clips[:1])) == 3
    path = export_onnx(model, tmp_path / "model.onnx", clips[:2])
    assert check_parity(model, path, clips.numpy()) < 1e-4


def test_the_track_classifier_reads_the_heads_track_trains_on_noisy_ones_and_exports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without the perception, the track classifier reads the shape of the position head's track
    (with the training split's scales), its logits join the head's, and ONNX agrees."""
    from services.trainer.export import check_parity, export_onnx
    from services.trainer.losses import track_classifier_noise

    torch.manual_seed(0)
    model = create_branch_model(_args(track=False, position_head=True, track_classifier=True, track_spreads=True))
    assert model.track_classifier is not None and model.position_shape is not None
    observed = torch.randn(6, 8, 3) * torch.tensor([1.0, 1.0, 0.5]) + torch.tensor([0.0, 0.0, 6.0])
    model.set_track_stats(observed)
    assert not torch.equal(model.position_shape.offset_scale, torch.ones(3))  # set from the split
    model.train()
    out = model(torch.randn(2, 3, 8, 32, 32))
    assert out.track_logits is not None and out.reversed_track_logits is not None
    noisy = track_classifier_noise(model, out, observed[:2])
    assert noisy is not None and noisy.shape == (4, 4)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 8, 32, 32))
        want = model.track_classifier(model.motion_features(model.observed_world(out)))
    assert torch.allclose(out.track_logits, want, atol=1e-6)
    clips = torch.randn(3, 3, 8, 32, 32)
    path = export_onnx(model, tmp_path / "model.onnx", clips[:2])
    assert check_parity(model, path, clips.numpy()) < 1e-4

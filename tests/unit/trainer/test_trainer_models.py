"""Shapes of every model and preset, and one forward/backward step."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from services.trainer.branch import PRESETS, create_b1, create_branch_model
from services.trainer.encoders.contract import TapSpec
from services.trainer.encoders.dual_pathway import create_dual_pathway
from services.trainer.encoders.i3d import create_i3d
from services.trainer.enhancements import (
    CODE_DIM,
    FEATURE_DIM,
    create_compression_autoencoder,
    create_text_alignment,
)
from services.trainer.model_args import ModelArgs
from services.trainer.perception import create_track_perception

# A readout built directly, on two one-channel taps at the seed encoders' strides.
ONE_CHANNEL_TAPS = {"fine": TapSpec(1, 1, 1), "coarse": TapSpec(1, 1, 2)}

ENCODERS = ("i3d", "dual_pathway")
ENHANCEMENTS = ("compression", "text_alignment", "none")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("size", [(8, 24, 24), (16, 32, 32), (12, 40, 48)])
def test_encoders_map_any_clip_size_to_512_features(encoder: str, size: tuple[int, int, int]) -> None:
    """Any clip size: the encoder's pooled features and taps are what it declares, and the
    branch built on it gives 512 features, with the track perception on or off."""
    t, h, w = size
    build = create_i3d if encoder == "i3d" else create_dual_pathway
    enc = build(in_channels=3, channels=(4, 8, 8), frames=t, height=h, width=w)
    video = enc(torch.randn(3, 3, t, h, w))
    assert video.pooled.shape == (3, enc.out_dim)
    for name, spec in enc.taps.items():
        tap = video.taps[name]
        assert tap.shape == (3, spec.channels, t // spec.temporal_stride, h // spec.spatial_stride,
                             w // spec.spatial_stride)
    perception = create_track_perception(taps=enc.taps, frames=t, height=h, width=w, focal_px=w * 0.866)
    track, _summary = perception(video.taps, torch.randn(3, 3, t, h, w))
    assert track.points.shape == (3, t, 3)  # one 3D point per observed frame
    assert track.mask_logits.shape == (3, t, h, w)  # the mask is at the clip's full resolution
    for on in (False, True):
        args = ModelArgs(encoder=encoder, enhancement="none", frames=t, height=h, width=w, horizon=2,
                         encoder_args={"channels": (4, 8, 8)}, track=on, focal_px=w * 0.866 if on else 0.0)
        out = create_branch_model(args)(torch.randn(3, 3, t, h, w))
        assert out.features.shape == (3, FEATURE_DIM) and (out.track is None) == (not on)


def test_dual_pathway_sees_every_frame_and_every_fourth_frame() -> None:
    enc = create_dual_pathway(in_channels=3, channels=(8, 8, 8), frames=16, height=32, width=32)
    seen: dict[str, tuple[int, ...]] = {}
    enc.motion_stages[0][0].register_forward_hook(
        lambda _m, i, _o: seen.__setitem__("motion", tuple(i[0].shape))
    )
    enc.context_stages[0].register_forward_hook(
        lambda _m, i, _o: seen.__setitem__("context", tuple(i[0].shape))
    )
    enc(torch.randn(2, 3, 16, 32, 32))
    assert seen["motion"] == (2, 3, 16, 32, 32)  # all frames, full resolution
    assert seen["context"] == (2, 3, 4, 16, 16)  # every 4th frame, half resolution


def test_compression_autoencoder_shapes() -> None:
    ae = create_compression_autoencoder()
    code, recon = ae(torch.randn(5, FEATURE_DIM))
    assert code.shape == (5, CODE_DIM) and recon.shape == (5, FEATURE_DIM)
    widths = [m.out_features for m in ae.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 128, 256, 512]


def test_text_alignment_logits_are_scaled_cosines() -> None:
    text = torch.randn(4, 384)
    al = create_text_alignment(class_text=text)
    z, logits = al(torch.randn(6, FEATURE_DIM))
    assert z.shape == (6, 384) and logits.shape == (6, 4)
    assert torch.allclose(z.norm(dim=1), torch.ones(6), atol=1e-5)
    cos = logits / al.logit_scale.exp()
    assert cos.abs().max() <= 1.0 + 1e-5


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("enhancement", ENHANCEMENTS)
def test_branch_model_outputs_and_backward(encoder: str, enhancement: str, track: bool) -> None:
    args = ModelArgs(
        encoder=encoder,
        enhancement=enhancement,
        frames=8,
        height=24,
        width=24,
        horizon=4,
        encoder_args={"channels": (4, 8, 8)},
        text_dim=16,
        track=track,
        focal_px=20.8 if track else 0.0,
        object_radius=0.45 if track else 0.0,
    )
    model = create_branch_model(args, class_text=torch.randn(4, 16))
    out = model(torch.randn(3, 3, 8, 24, 24))
    assert out.logits.shape == (3, 4)
    assert out.forecast.shape == (3, 4, 3)
    assert out.embedding.shape == (3, model.embedding_dim)
    assert (
        model.embedding_dim
        == {"compression": CODE_DIM, "text_alignment": 16, "none": FEATURE_DIM}[enhancement]
    )
    assert (out.reconstruction is not None) == (enhancement == "compression")
    assert (out.text_logits is not None) == (enhancement == "text_alignment")
    loss = out.logits.sum() + out.forecast.sum()
    if out.reconstruction is not None:
        loss = loss + out.reconstruction.sum()
    if out.text_logits is not None:
        loss = loss + out.text_logits.sum()
    assert (out.track is not None) == track
    if out.track is not None:
        loss = loss + out.track.points.sum() + out.track.mask_logits.sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_seed_presets_at_seed_clip_size(name: str) -> None:
    kw = {"class_text": torch.randn(4, 384)} if name == "b3" else {}
    model = PRESETS[name](**kw).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 64, 64))
    assert out.logits.shape == (2, 4) and out.forecast.shape == (2, 4, 3)
    expected = {
        "b1": ("i3d", "compression"),
        "b2": ("dual_pathway", "compression"),
        "b3": ("i3d", "text_alignment"),
        "b4": ("dual_pathway", "none"),
    }[name]
    assert (model.args.encoder, model.args.enhancement) == expected


def test_model_args_round_trip_rebuilds_the_same_model() -> None:
    args = ModelArgs(encoder="i3d", enhancement="compression", frames=8, height=24, width=24, horizon=4)
    again = ModelArgs.from_dict(args.to_dict())
    assert again == args
    a, b = create_branch_model(args), create_branch_model(again)
    assert a.state_dict().keys() == b.state_dict().keys()


def test_forecast_statistics_are_undone_in_world_units() -> None:
    args = ModelArgs(encoder="i3d", enhancement="none", frames=8, height=24, width=24, horizon=2)
    m = create_branch_model(args)
    m.set_forecast_stats(torch.full((2, 3), 5.0), torch.full((2, 3), 2.0))
    assert torch.equal(m.to_world(torch.ones(1, 2, 3)), torch.full((1, 2, 3), 7.0))


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(encoder="resnet", enhancement="none"), "encoder: unknown 'resnet'; registered: .*i3d"),
        (dict(encoder="i3d", enhancement="magic"), "enhancement"),
        (dict(encoder="i3d", enhancement="text_alignment"), "text"),
    ],
)
def test_bad_model_args_are_refused_with_the_field_named(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_branch_model(ModelArgs(frames=8, height=24, width=24, horizon=4, **kw))


def test_track_readout_turns_the_true_disc_back_into_the_true_3d_point() -> None:
    """The readout's geometry and the training targets agree: the mask the loss asks for
    (the sphere's anti-aliased disc) and the depth map it is trained towards yield the
    true position through the camera."""
    from services.trainer.losses import disc_masks
    from services.trainer.perception.readout import TrackReadout
    from trajlab.data.camera import Camera

    cam = Camera(64, 64, 60.0)
    readout = TrackReadout(
        taps=ONE_CHANNEL_TAPS, frames=3, height=64, width=64, focal_px=cam.focal_px
    )
    # Left and up near, centre mid-depth, right and down far (x right, y up, z depth).
    true = torch.tensor([[[-1.0, 0.8, 4.0], [0.0, 0.0, 7.0], [2.0, -1.5, 9.5]]])
    readout.set_stats(true)
    mask = disc_masks(true, height=64, width=64, focal_px=cam.focal_px, radius=0.45)
    log_depth = torch.log(true[..., 2] / readout.mean[2])[..., None, None].expand(1, 3, 64, 64)
    got = readout.points_from(mask, log_depth)
    # Exact but for the empty-mask prior's pull towards the image centre and the mean depth:
    # within 3 % (the farthest, smallest disc here covers ~21 pixels, against 0.5 of prior).
    assert ((got - true).abs() <= 0.03 * true.abs() + 0.01).all(), got
    # An empty mask (the sphere hidden) falls back to the image centre at the mean depth.
    empty = readout.points_from(torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    assert torch.allclose(empty, torch.tensor([0.0, 0.0, float(readout.mean[2])]).expand(1, 3, 3))


@pytest.mark.parametrize("jitter", [0.3, 0.7])
def test_the_camera_shift_of_every_frame_is_read_off_the_background(jitter: float) -> None:
    """Clips rendered with camera jitter (the whole view moved by whole pixels in some frames,
    a moving sphere, clutter and a transient): the estimate is the renderer's shift, every frame."""
    import numpy as np

    from services.trainer.perception.camera_shift import CameraShift
    from trajlab.data.camera import Camera
    from trajlab.data.render import RenderSettings, render_clip
    from trajlab.preprocess import to_model_input

    settings = RenderSettings(camera=Camera(64, 64, 60.0), clutter=2, transients=1, camera_jitter=jitter)
    t = np.arange(16)[:, None]
    clips, shifts = [], []
    for seed in range(6):
        path = np.array([-1.5, -0.5, 6.0]) + t * np.array([0.2, 0.06, 0.1]) * (1 + seed / 3)
        clip, info = render_clip(path, settings, np.random.default_rng(seed))
        clips.append(clip)
        shifts.append(info.shifts)
    truth = torch.tensor(np.stack(shifts), dtype=torch.float32)  # (6, 16, 2)
    assert (truth != 0).any(), "the test needs frames that moved"
    est = CameraShift(settings.jitter_margin)(torch.from_numpy(to_model_input(np.stack(clips))))
    assert est.shape == (6, 16, 2)
    assert float((est - truth).abs().max()) < 0.01, (est - truth).abs().max()


def test_the_track_readout_takes_the_camera_shift_off_the_track() -> None:
    """A frame whose view moved shows the sphere moved: the mask there (the target the loss asks
    for, given the shift) with the shift gives the true world point, without it a wrong one."""
    from services.trainer.losses import disc_masks
    from services.trainer.perception.readout import TrackReadout
    from trajlab.data.camera import Camera

    cam = Camera(64, 64, 60.0)
    readout = TrackReadout(
        taps=ONE_CHANNEL_TAPS, frames=3, height=64, width=64, focal_px=cam.focal_px, camera_shift=1
    )
    true = torch.tensor([[[-1.0, 0.8, 4.0], [0.0, 0.0, 7.0], [2.0, -1.5, 9.5]]])
    readout.set_stats(true)
    shift = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]])
    mask = disc_masks(true, height=64, width=64, focal_px=cam.focal_px, radius=0.45, shift=shift)
    plain = disc_masks(true, height=64, width=64, focal_px=cam.focal_px, radius=0.45)
    assert torch.equal(mask[0, 1], plain[0, 1]) and not torch.equal(mask[0, 0], plain[0, 0])
    log_depth = torch.log(true[..., 2] / readout.mean[2])[..., None, None].expand(1, 3, 64, 64)
    got = readout.points_from(mask, log_depth, shift=shift)
    assert ((got - true).abs() <= 0.03 * true.abs() + 0.01).all(), got
    off = readout.points_from(mask, log_depth)  # the shift left on: one pixel is 0.07-0.17 units here
    assert float((off - true)[0, 0, 0]) > 0.05 and float((off - true)[0, 2, 1]) < -0.1


def test_disc_masks_cover_the_sphere_area_where_the_camera_projects_it() -> None:
    from services.trainer.losses import disc_masks
    from trajlab.data.camera import Camera, apparent_radius, project

    cam = Camera(64, 64, 60.0)
    p = torch.tensor([[[0.5, -0.3, 5.0]]])
    m = disc_masks(p, height=64, width=64, focal_px=cam.focal_px, radius=0.45)[0, 0]
    r = float(apparent_radius(5.0, 0.45, cam))
    assert abs(float(m.sum()) - torch.pi * r * r) / (torch.pi * r * r) < 0.02
    u, v = project(p[0, 0].numpy(), cam)
    rows, cols = torch.nonzero(m > 0.99, as_tuple=True)
    assert abs(float(cols.float().mean()) + 0.5 - float(u)) < 0.5
    assert abs(float(rows.float().mean()) + 0.5 - float(v)) < 0.5


def test_the_forecast_prior_extrapolates_constant_velocity_from_the_latest_frames() -> None:
    from services.trainer.forecast_priors import linear_extrapolation

    k = torch.arange(20.0)
    path = 3.0 + 0.7 * k
    prior = linear_extrapolation(16, 4)
    assert torch.allclose(prior @ path[:16], path[16:], atol=1e-4)
    # Only the last 4 frames count: an earlier detour changes nothing.
    bent = path.clone()
    bent[:12] += torch.linspace(2.0, 0.0, 12)
    assert torch.allclose(prior @ bent[:16], path[16:], atol=1e-4)


def test_the_class_gated_prior_starts_as_constant_velocity_and_follows_the_chosen_class() -> None:
    from services.trainer.forecast_priors import ClassGatedExtrapolation

    torch.manual_seed(0)
    gate = ClassGatedExtrapolation(frames=16, horizon=4, num_classes=4)
    k = torch.arange(20.0)[:, None]
    path = torch.tensor([[1.0, -2.0, 6.0]]) + k * torch.tensor([[0.3, 0.1, -0.05]])  # (20, 3), a line
    world = path[None, :16].repeat(2, 1, 1)
    probs = torch.softmax(torch.randn(2, 4), dim=-1)
    # Untrained, every class forecasts constant velocity: exact on a line, whatever the probabilities.
    assert torch.allclose(gate(world, probs), path[None, 16:].expand(2, 4, 3), atol=1e-4)
    # Each class has its own map; one-hot probabilities pick that class's forecast alone.
    with torch.no_grad():
        gate.bias[2] = torch.arange(12.0)
    onehot = torch.eye(4)[[2, 0]]
    out = gate(world, onehot)
    assert torch.allclose(out[0], path[16:] + torch.arange(12.0).reshape(4, 3), atol=1e-4)
    assert torch.allclose(out[1], path[16:], atol=1e-4)
    # A mixture is the probability-weighted mean of the classes' forecasts.
    half = torch.tensor([[0.5, 0.0, 0.5, 0.0]])
    assert torch.allclose(gate(world[:1], half)[0], path[16:] + 0.5 * torch.arange(12.0).reshape(4, 3), atol=1e-4)


def test_the_forecast_prior_is_trained_by_the_forecast_loss_but_does_not_train_the_classifier() -> None:
    model = create_b1(height=32, width=32, channels=(4, 8, 8), track=True, focal_px=27.7, object_radius=0.9)
    model.set_track_stats(torch.randn(8, 16, 3) + torch.tensor([0.0, 0.0, 7.0]))  # depths around 7
    out = model(torch.randn(2, 3, 16, 32, 32))
    out.forecast.square().sum().backward()
    assert model.extrapolate.weight.grad is not None and model.extrapolate.weight.grad.abs().sum() > 0
    # The gate's probabilities are detached: the forecast loss leaves the classifier alone.
    assert model.heads["classify"].weight.grad is None or float(model.heads["classify"].weight.grad.abs().sum()) == 0.0


def test_the_depth_cues_start_at_zero_and_learn_depth_from_the_brightest_masked_pixel() -> None:
    from services.trainer.perception.depth_cues import DepthCues

    torch.manual_seed(0)

    def frames(n: int) -> tuple[torch.Tensor, ...]:
        # Depths drifting smoothly in [4, 10] over 16 frames; the sphere is a 3x3 mask whose
        # brightest pixel is sqrt(4 / z) (the renderer's law), on a background as bright or
        # brighter (0.9) that the mask leaves out. The area and the depth map say nothing.
        z = 4.0 + 6.0 * torch.rand(n, 1) + torch.linspace(0.0, 1.0, 16) * (torch.rand(n, 1) - 0.5)
        z = z.clamp(4.0, 10.0)
        m = torch.zeros(n, 16, 8, 8, dtype=torch.float64)
        m[:, :, 2:5, 2:5] = 1.0
        bright = torch.full((n, 16, 8, 8), 0.9, dtype=torch.float64)
        bright[:, :, 2:5, 2:5] = 0.3
        bright[:, :, 3, 3] = torch.sqrt(4.0 / z).double()
        area = m.sum(dim=(2, 3)) + 0.5
        return m, bright, area, torch.zeros(n, 16, dtype=torch.float64), z.log() - math.log(6.0)

    cues = DepthCues()
    m, bright, area, d, target = frames(64)
    assert torch.equal(cues(m, bright, area, d), torch.zeros(64, 16))  # an untrained module changes nothing
    opt = torch.optim.Adam(cues.parameters(), lr=3e-3)
    for _ in range(300):
        loss = (cues(m, bright, area, d) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    cues.eval()
    m, bright, area, d, target = frames(64)
    with torch.no_grad():
        err = (cues(m, bright, area, d) - target).abs().mean()
    # Depth spans log(10 / 4) = 0.92; read off the peak it is a few per cent off at most.
    assert float(err) < 0.03, float(err)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_depth_cues_move_the_tracks_depth_and_train_with_it(encoder: str) -> None:
    args = ModelArgs(
        encoder=encoder, enhancement="none", frames=16, height=32, width=32, horizon=4,
        encoder_args={"channels": (8, 8, 8)}, track=True, depth_cues=True, focal_px=27.7, object_radius=0.9,
    )
    model = create_branch_model(args).eval()
    model.set_track_stats(torch.randn(8, 16, 3) + torch.tensor([0.0, 0.0, 7.0]))
    clip = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        before = model.perception.to_world(model(clip).track.points)
        model.perception.cues.out.bias.fill_(0.1)  # a log-depth offset of 0.1 on every frame
        after = model.perception.to_world(model(clip).track.points)
    # The same image position, every point exp(0.1) times as far along its ray.
    assert torch.allclose(after, before * torch.exp(torch.tensor(0.1)), rtol=1e-5, atol=1e-6)
    model.train()
    model(clip).track.points.sum().backward()
    # Its output layer starts at zero, so the first gradients reach that layer alone.
    assert model.perception.cues.out.weight.grad.abs().sum() > 0


def test_a_hidden_sphere_gives_the_same_track_in_onnx_runtime(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A mask of sigmoid tails only (the sphere hidden in every frame): the readout's sums must
    not be at the mercy of float32 rounding, which PyTorch and ONNX Runtime do not share (in
    float32 this case was 6e-5 off at the forecast, 100x what it is in float64, and a seed b4
    model failed the 1e-4 parity gate on it)."""
    import numpy as np
    import onnxruntime as ort

    from services.trainer.branch import ExportWrapper
    from services.trainer.export import export_onnx

    args = ModelArgs(
        encoder="dual_pathway", enhancement="none", frames=16, height=64, width=64, horizon=4,
        encoder_args={"channels": (8, 16, 32)}, track=True, depth_cues=True, focal_px=55.4, object_radius=0.45,
    )
    model = create_branch_model(args)
    model.set_track_stats(torch.randn(64, 16, 3) * 1.5 + torch.tensor([0.0, 0.0, 7.0]))
    with torch.no_grad():
        model.perception.mask.bias.fill_(-10.0)  # every pixel ~1e-5 of mask
        model.perception.coarse_mask.bias.fill_(-2.0)
        model.perception.cues.out.weight.normal_(0.0, 0.1)  # the depth cues' peak of tails counts too
    model.eval()
    clips = torch.randn(8, 3, 16, 64, 64)
    path = export_onnx(model, tmp_path / "model.onnx", clips[:1])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"clip": clips.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in ExportWrapper(model)(clips)]
    names = ("probabilities", "forecast", "embedding", "track", "track_confidence")
    for name, g, w in zip(names, got, want, strict=True):
        assert float(np.abs(g - w).max()) < 1e-5, name
    assert float(np.abs(got[4]).max()) == 0.0  # a hidden sphere: the track says it saw nothing


def test_the_tracks_confidence_is_one_where_the_mask_is_sure_of_the_object_and_zero_where_not() -> None:
    from services.trainer.losses import disc_masks
    from services.trainer.perception.readout import TrackReadout

    true = torch.tensor([[[-1.0, 0.8, 4.0], [0.0, 0.0, 7.0], [2.0, -1.5, 9.5]]])
    disc = disc_masks(true, height=64, width=64, focal_px=55.4, radius=0.45).double()
    assert torch.equal(TrackReadout.confidence(disc), torch.ones(1, 3))  # the sphere seen in every frame
    hidden = torch.full((1, 3, 64, 64), 1e-5, dtype=torch.float64)  # sigmoid tails only
    untrained = torch.full((1, 3, 64, 64), 0.018, dtype=torch.float64)  # spread thin, as at the start
    assert torch.equal(TrackReadout.confidence(hidden), torch.zeros(1, 3))
    assert torch.equal(TrackReadout.confidence(untrained), torch.zeros(1, 3))
    half = disc.clone()
    half[:, 1] *= 0.52  # the middle frame's mask barely above even: part of the way
    got = TrackReadout.confidence(half)
    assert 0.0 < float(got[0, 1]) < 1.0 and float(got[0, 0]) == 1.0


@pytest.mark.parametrize("track", [True, False])
def test_the_export_serves_the_track_the_heads_read_only_when_the_model_has_one(tmp_path, track: bool) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from services.trainer.export import check_parity, export_onnx, output_specs

    model = create_b1(
        height=32, width=32, channels=(4, 8, 8), track=track, focal_px=27.7 if track else 0.0,
        object_radius=0.9 if track else 0.0, sphere_fit=track,
    )
    if track:
        model.set_track_stats(torch.randn(8, 16, 3) + torch.tensor([0.0, 0.0, 7.0]))
    model.eval()
    clips = torch.randn(3, 3, 16, 32, 32)
    path = export_onnx(model, tmp_path / "model.onnx", clips[:2])
    assert check_parity(model, path, clips.numpy()) < 1e-4
    names = [o["name"] for o in output_specs(model)]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == names
    if not track:
        assert names == ["probabilities", "forecast", "embedding"]
        return
    assert names[3:] == ["track", "track_confidence"]
    got = dict(zip(names, sess.run(None, {"clip": clips.numpy()}), strict=True))
    with torch.no_grad():
        out = model(clips)
        world = model.track_world(out.track).numpy()
    assert got["track"].shape == (3, 16, 3) and got["track_confidence"].shape == (3, 16)
    np.testing.assert_allclose(got["track"], world, atol=1e-4)  # world units: what the heads read
    assert ((got["track_confidence"] >= 0) & (got["track_confidence"] <= 1)).all()


@pytest.mark.parametrize("enhancement", ENHANCEMENTS)
def test_the_track_classifier_adds_its_logits_and_reads_the_track_detached(enhancement: str) -> None:
    from services.trainer.losses import combined_loss

    k = 4
    args = ModelArgs(
        encoder="i3d", enhancement=enhancement, frames=8, height=24, width=24, horizon=4,
        encoder_args={"channels": (4, 8, 8)}, track=True, track_classifier=True, focal_px=20.8, object_radius=0.45,
        text_dim=16 if enhancement == "text_alignment" else 0,
    )
    model = create_branch_model(args)
    model.set_track_stats(torch.randn(8, 8, 3) + torch.tensor([0.0, 0.0, 7.0]))
    clip = torch.randn(3, 3, 8, 24, 24)
    model.eval()
    with torch.no_grad():
        out = model(clip)
        assert out.track_logits.shape == (3, k) and out.reversed_track_logits is None  # eval: no reversal
        # Its logits are part of the model's: push them hard toward one class and the model follows.
        model.track_classifier.net[-1].bias.copy_(torch.tensor([0.0, 0.0, 50.0, 0.0]))
        assert model(clip).logits.argmax(1).tolist() == [2, 2, 2]
        # Off, the model is the head alone.
        plain = create_branch_model(dataclasses.replace(args, track_classifier=False))
        plain.load_state_dict(model.state_dict(), strict=False)
        plain.eval()
        shifted = model(clip)
        assert torch.allclose(shifted.logits - shifted.track_logits, plain(clip).logits, atol=1e-5)
    model.train()
    out = model(clip)
    assert out.reversed_track_logits is not None and out.reversed_track_logits.shape == (3, k)
    # The classifier reads the track detached: its loss trains it and nothing upstream.
    out.track_logits.sum().backward()
    assert model.track_classifier.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
    labels = torch.tensor([0, 1, 2])
    _, parts = combined_loss(
        model(clip), labels, torch.zeros(3, 4, 3), forecast_weight=1.0, aux_weight=0.1
    )
    assert "track_ce" in parts and float(parts["track_ce"]) > 0
    # The model's forward takes the clip alone: no true positions, no noisy tracks.
    assert "observed" not in inspect.signature(model.forward).parameters
    assert "noisy_track_logits" not in type(model(clip))._fields


def test_the_track_classifier_also_learns_on_true_positions_carrying_another_clips_track_error() -> None:
    """The noisy true tracks are a training input of the loss (the model's forward never sees
    the true positions)."""
    from services.trainer.losses import combined_loss, track_classifier_noise

    args = ModelArgs(
        encoder="i3d", enhancement="none", frames=8, height=24, width=24, horizon=4,
        encoder_args={"channels": (4, 8, 8)}, track=True, track_classifier=True, focal_px=20.8, object_radius=0.45,
    )
    model = create_branch_model(args)
    model.set_track_stats(torch.randn(8, 8, 3) + torch.tensor([0.0, 0.0, 7.0]))
    clip = torch.randn(3, 3, 8, 24, 24)
    observed = torch.randn(3, 8, 3) * 0.3 + torch.tensor([0.0, 0.0, 6.0])
    labels = torch.tensor([0, 1, 3])
    model.train()
    torch.manual_seed(0)
    out = model(clip)
    noisy = track_classifier_noise(model, out, observed)
    # The noisy true tracks forwards, then reversed: twice the batch.
    assert noisy is not None and noisy.shape == (6, 4)
    torch.manual_seed(0)
    plain = model(clip)
    _, with_noise = combined_loss(
        out, labels, torch.zeros(3, 4, 3), forecast_weight=1.0, aux_weight=0.1, noisy_track_logits=noisy
    )
    _, without = combined_loss(plain, labels, torch.zeros(3, 4, 3), forecast_weight=1.0, aux_weight=0.1)
    assert float(with_noise["track_ce"]) != float(without["track_ce"])  # the noisy tracks are scored
    assert float(with_noise["ce"]) == float(without["ce"])  # and nothing else changes
    # They train the classifier and nothing upstream (the track and the positions are data here).
    model.zero_grad()
    noisy.sum().backward()
    assert model.track_classifier.net[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.encoder.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.perception.parameters())
    # A model without a track classifier has none.
    bare = create_branch_model(dataclasses.replace(args, track_classifier=False))
    bare.set_track_stats(torch.randn(8, 8, 3) + torch.tensor([0.0, 0.0, 7.0]))
    assert track_classifier_noise(bare, bare(clip), observed) is None


def test_a_borrowed_track_error_is_another_clips_error_scaled_to_this_clips_depth() -> None:
    from services.trainer.perception.track_classifier import borrowed_track_error

    n = 6
    observed = torch.randn(n, 16, 3) + torch.tensor([0.0, 0.0, 7.0])
    observed[..., 2] = torch.linspace(4.0, 9.0, n)[:, None] + 0.1 * torch.randn(n, 16)
    depth = observed[..., 2:3]
    # Each clip's track is off by its own pattern of errors, proportional to its depth.
    relative = 0.02 * torch.randn(n, 16, 3)
    track = observed + relative * depth
    torch.manual_seed(0)
    noisy = borrowed_track_error(track, observed)
    got = (noisy - observed) / depth  # each clip's error, relative to its own depth
    # Each one is another clip's pattern, every pattern used once.
    match = torch.cdist(got.reshape(n, -1), relative.reshape(n, -1)).argmin(1)
    assert torch.allclose(got, relative[match], atol=1e-5)
    assert sorted(match.tolist()) == list(range(n))
    assert match.tolist() != list(range(n))  # paired with other clips (seed 0)
    # So a far clip carries a larger error in world units than a near one with the same pattern.
    assert torch.allclose(noisy - observed, relative[match] * depth, atol=1e-5)

def test_the_track_classifier_tells_the_motions_apart_from_a_track_run_either_way() -> None:
    """Trained on true tracks (with their time reversals, as in training), it classifies held-out
    tracks forwards and backwards: every motion class run backwards is the same class."""
    from services.trainer.perception.motion import motion_features, motion_features_dim
    from services.trainer.perception.track_classifier import TrackClassifier

    positions, y, _ = _paths(120)
    world = positions[:, :16]
    offset_scale = (world - world[:, -1:]).reshape(-1, 3).std(0)
    step_scale = (world[:, 1:] - world[:, :-1]).reshape(-1, 3).std(0)

    def feats(w: torch.Tensor) -> torch.Tensor:
        return motion_features(w, offset_scale, step_scale)

    train, test = slice(0, 400), slice(400, None)
    clf = TrackClassifier(in_dim=motion_features_dim(16), num_classes=4)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    x_train = torch.cat([feats(world[train]), feats(world[train].flip(1))])
    y_train = torch.cat([y[train], y[train]])
    for _ in range(300):
        idx = torch.randint(0, len(x_train), (64,))
        loss = torch.nn.functional.cross_entropy(clf(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        forwards = (clf(feats(world[test])).argmax(1) == y[test]).float().mean()
        backwards = (clf(feats(world[test].flip(1))).argmax(1) == y[test]).float().mean()
    assert float(forwards) >= 0.9 and float(backwards) >= 0.9, (float(forwards), float(backwards))


def _paths(per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded true paths of every class: (N, 20, 3) positions, (N,) labels, (N,) extents."""
    import numpy as np

    from trajlab.data.trajectories import TrajectoryGenerator

    gen = TrajectoryGenerator(frames=16, horizon=4)
    rng = np.random.default_rng(seed)
    labels = np.arange(4 * per_class) % 4
    trajs = [gen.sample(int(c), rng) for c in labels]
    positions = torch.tensor(np.stack([t.positions for t in trajs]), dtype=torch.float32)
    extents = torch.tensor([t.extent for t in trajs], dtype=torch.float32)
    return positions, torch.from_numpy(labels), extents


def _error_pct(pred: torch.Tensor, true: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per path as a percentage of its extent (the trainer's forecast metric)."""
    return (pred - true).abs().mean(dim=(1, 2)) / extent * 100


def test_the_parametric_prior_extrapolates_every_kind_of_path_from_its_own_class() -> None:
    """On clean paths of the generator, each class's fit continues its own kind of path: lines and
    parabolas exactly, circles and helices (rate found on a grid) to 0.3 % of the extent on average;
    and the wrong family does not (a circle continued as a line is far off)."""
    from services.trainer.forecast_priors import ParametricExtrapolation

    positions, labels, extents = _paths(12)
    prior = ParametricExtrapolation(frames=16, horizon=4)
    per_class = prior.per_class(positions[:, :16])  # (N, K, 4, 3)
    own = per_class[torch.arange(len(labels)), labels]
    err = _error_pct(own, positions[:, 16:], extents)
    for k, name in enumerate(("linear", "circular", "helical", "parabolic")):
        mean, worst = float(err[labels == k].mean()), float(err[labels == k].max())
        if name in ("linear", "parabolic"):
            assert worst < 0.01, (name, worst)
        else:
            assert mean < 0.3 and worst < 1.0, (name, mean, worst)
    circles = labels == 1
    as_line = _error_pct(per_class[circles, 0], positions[circles, 16:], extents[circles])
    assert float(as_line.mean()) > 10.0
    # One-hot probabilities pick that class's fit; a mixture is the weighted mean of the fits.
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(prior(positions[:, :16], onehot), own, atol=1e-5)
    half = torch.full((len(labels), 4), 0.0)
    half[:, 0] = half[:, 1] = 0.5
    assert torch.allclose(prior(positions[:, :16], half), per_class[:, :2].mean(1), atol=1e-5)


def test_the_parametric_prior_averages_a_noisy_track_better_than_the_latest_frames() -> None:
    """A track off by noise (as a learned track is): the fit over all 16 frames forecasts the next
    4 much closer than constant velocity through the last 4 (the affine prior's starting point)."""
    from services.trainer.forecast_priors import ClassGatedExtrapolation, ParametricExtrapolation

    positions, labels, extents = _paths(25, seed=1)
    gen = torch.Generator().manual_seed(0)
    noisy = positions[:, :16] + 0.03 * extents[:, None, None] * torch.randn(positions[:, :16].shape, generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    fit = _error_pct(ParametricExtrapolation(frames=16, horizon=4)(noisy, onehot), positions[:, 16:], extents)
    with torch.no_grad():
        cv = ClassGatedExtrapolation(frames=16, horizon=4, num_classes=4)(noisy, onehot)
    cv_err = _error_pct(cv, positions[:, 16:], extents)
    assert float(fit.mean()) < 0.6 * float(cv_err.mean()), (float(fit.mean()), float(cv_err.mean()))


def test_robust_refits_keep_a_few_far_off_frames_from_pulling_the_fit() -> None:
    """A noisy track with three frames far off (a sphere hidden behind a distractor reads a wrong
    depth): least squares bends every fit toward them; three Huber re-fits mostly ignore them
    and forecast far closer. On clean paths the re-fits change nothing."""
    from services.trainer.forecast_priors import ParametricExtrapolation

    positions, labels, extents = _paths(25, seed=2)
    gen = torch.Generator().manual_seed(0)
    track = positions[:, :16] + 0.01 * extents[:, None, None] * torch.randn(positions[:, :16].shape, generator=gen)
    frames = torch.stack([torch.randperm(15, generator=gen)[:3] for _ in range(len(labels))])  # not the last
    off = torch.zeros_like(track)
    off.scatter_(1, frames[..., None].expand(-1, -1, 3), 0.3 * extents[:, None, None].expand(-1, 3, 3))
    onehot = torch.nn.functional.one_hot(labels, 4).float()
    plain, robust = (ParametricExtrapolation(frames=16, horizon=4, refits=r) for r in (0, 3))
    plain_err = _error_pct(plain(track + off, onehot), positions[:, 16:], extents)
    robust_err = _error_pct(robust(track + off, onehot), positions[:, 16:], extents)
    assert float(robust_err.mean()) < 0.6 * float(plain_err.mean()), (robust_err.mean(), plain_err.mean())  # 4.3 vs 8.8
    clean = positions[:, :16]
    assert torch.allclose(robust(clean, onehot), plain(clean, onehot), atol=0.02)  # world units; paths ~2-3
    with pytest.raises(ValueError, match="refits must be >= 0"):
        ParametricExtrapolation(frames=16, horizon=4, refits=-1)


def test_the_model_forecasts_from_the_parametric_prior_and_exports_it() -> None:
    """With forecast_prior "parametric" the model's prior is the fit (no parameters of its own, the
    forecast loss still reaches the track); an unknown prior is refused by name."""
    from services.trainer.forecast_priors import ParametricExtrapolation

    model = create_b1(
        height=32, width=32, channels=(4, 8, 8), track=True, focal_px=27.7, object_radius=0.9,
        forecast_prior="parametric",
    )
    args = model.args
    assert isinstance(model.extrapolate, ParametricExtrapolation)
    assert not list(model.extrapolate.parameters())
    # The precomputed fits are not weights: a checkpoint holds none of them.
    assert not any(k.startswith("extrapolate.") for k in model.state_dict())
    model.set_track_stats(torch.randn(8, 16, 3) + torch.tensor([0.0, 0.0, 7.0]))
    out = model(torch.randn(2, 3, 16, 32, 32))
    out.forecast.square().sum().backward()
    assert model.perception.mask.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="forecast_prior: unknown 'cubic'"):
        create_branch_model(dataclasses.replace(args, forecast_prior="cubic"))


def _rendered_clips(n: int, *, jitter: float = 0.0, transients: int = 1):  # type: ignore[no-untyped-def]
    """n seed-size clips (64x64, clutter, a transient) of a sphere on varied paths, their render info."""
    import numpy as np

    from trajlab.data.camera import Camera
    from trajlab.data.render import RenderSettings, render_clip

    settings = RenderSettings(
        camera=Camera(64, 64, 60.0), clutter=2, transients=transients, camera_jitter=jitter
    )
    t = np.arange(16)[:, None]
    clips, infos, paths = [], [], []
    for seed in range(n):
        rng = np.random.default_rng(100 + seed)
        start = np.array([rng.uniform(-1.2, 0.2), rng.uniform(-0.8, 0.4), rng.uniform(4.5, 7.0)])
        path = start + t * np.array([0.08, 0.04, rng.uniform(-0.05, 0.15)])
        clip, info = render_clip(path, settings, rng)
        clips.append(clip)
        infos.append(info)
        paths.append(path)
    return np.stack(clips), infos, np.stack(paths), settings


def test_the_sphere_fit_finds_each_frames_centre_and_depth_from_its_pixels() -> None:
    """Started half a pixel and 8 % of the depth off, the fit lands on the renderer's centre
    (hundredths of a pixel) and depth (tenths of a percent) on every frame it is confident of."""
    import numpy as np

    from services.trainer.perception.sphere_fit import SphereFit

    clips, infos, paths, settings = _rendered_clips(6)
    value = torch.from_numpy(clips.max(axis=-1).astype(np.float32))  # (6, 16, 64, 64) grey levels
    centres = torch.tensor(np.stack([i.centers for i in infos]), dtype=torch.float32)
    z = torch.tensor(paths[..., 2], dtype=torch.float32)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 6, 16, generator=g)
    fit = SphereFit(height=64, width=64, focal_px=settings.camera.focal_px, radius=0.45)
    u, v, zf, conf = fit(value, centres[..., 0] + 0.5 * noise[0], centres[..., 1] + 0.5 * noise[1],
                         z * (1 + 0.08 * noise[2]))
    sure = conf > 0.99
    assert float(sure.float().mean()) > 0.9, conf
    depth_err = ((zf / z - 1).abs())[sure]
    assert float(depth_err.median()) < 0.003 and float(depth_err.max()) < 0.02, depth_err.max()
    centre_err = torch.hypot(u - centres[..., 0], v - centres[..., 1])[sure]
    assert float(centre_err.max()) < 0.1, centre_err.max()
    # Where the start was, no: the fit moved the depth by up to 8 %.
    assert float(((z * (1 + 0.08 * noise[2])) / z - 1).abs()[sure].median()) > 0.03


def test_a_sphere_the_fit_cannot_explain_keeps_the_readouts_point() -> None:
    """A frame whose sphere is painted over (a flat patch, as a distractor in front of it would
    be) gets no confidence, and the track keeps the readout's own point there."""
    import numpy as np

    from services.trainer.perception.readout import TrackReadout
    from services.trainer.perception.sphere_fit import SphereFit

    clips, infos, paths, settings = _rendered_clips(2, transients=0)
    u, v = (int(x) for x in infos[0].centers[5])
    clips[0, 5, v - 8 : v + 9, u - 8 : u + 9] = (200, 40, 40)
    value = torch.from_numpy(clips.max(axis=-1).astype(np.float32))
    centres = torch.tensor(np.stack([i.centers for i in infos]), dtype=torch.float32)
    z = torch.tensor(paths[..., 2], dtype=torch.float32)
    fit = SphereFit(height=64, width=64, focal_px=settings.camera.focal_px, radius=0.45)
    _, _, _, conf = fit(value, centres[..., 0], centres[..., 1], z)
    assert float(conf[0, 5]) == 0.0 and float(conf[0, 4]) > 0.99 and float(conf[1].min()) > 0.99

    readout = TrackReadout(taps=ONE_CHANNEL_TAPS, frames=16, height=64, width=64,
                           focal_px=settings.camera.focal_px, object_radius=0.45)
    true = torch.tensor(paths, dtype=torch.float32)
    start = true * torch.tensor([1.02, 0.98, 1.05])  # a readout a few percent off
    got = readout.fit(start, value / 255.0, None)
    assert torch.equal(got[0, 5], start[0, 5])  # the hidden frame: the readout's point
    err = (got - true).norm(dim=-1)
    err[0, 5] = 0.0
    assert float(err.max()) < 0.03 < float((start - true).norm(dim=-1).min())


def test_the_heads_read_the_fitted_track_and_the_readouts_loss_its_own() -> None:
    args = ModelArgs(encoder="i3d", enhancement="none", frames=16, height=64, width=64, horizon=4,
                     encoder_args={"channels": (4, 8, 8)}, track=True, track_classifier=True, depth_cues=True,
                     forecast_prior="parametric", sphere_fit=True, focal_px=55.4, object_radius=0.45)
    model = create_branch_model(args)
    model.set_track_stats(torch.randn(64, 16, 3) * 1.5 + torch.tensor([0.0, 0.0, 7.0]))
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 16, 64, 64))
        assert out.track.fitted is not None and out.track.fitted.shape == out.track.points.shape
        track = model.perception
        want = model.track_classifier(track.shape(track.to_world(out.track.fitted)))
    assert torch.allclose(out.track_logits, want, atol=1e-5)
    # Off: no fit, the heads read the readout's points.
    off = create_branch_model(dataclasses.replace(args, sphere_fit=False))
    assert off.perception.sphere_fit is None
    assert off(torch.randn(2, 3, 16, 64, 64)).track.fitted is None


@pytest.mark.parametrize("missing", ["forecast_prior", "prior_refits", "camera_shift", "sphere_fit"])
def test_model_args_written_by_older_trainers_are_refused_with_a_message_to_retrain(missing: str) -> None:
    """What checkpoints of earlier formats stored (no format field, the knob of a later format
    missing) is refused, not rebuilt into a model with another meaning."""
    from services.trainer.model_args import ModelFormatError

    old = ModelArgs(encoder="i3d", enhancement="none", frames=16, height=32, width=32, horizon=4,
                    encoder_args={"channels": (4, 8, 8)}, track=True, focal_px=27.7, object_radius=0.9).to_dict()
    old.pop("format")
    old.pop(missing)
    with pytest.raises(ModelFormatError, match=r"older trainer.*retrain the branch"):
        ModelArgs.from_dict(old)

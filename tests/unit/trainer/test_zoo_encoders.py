"""Every registered encoder builds at the profiles' clip sizes and keeps the contract."""

from __future__ import annotations

import pytest
import torch

from services.trainer import zoo
from services.trainer.encoders.contract import VideoEncoder
from tests.unit.trainer.zoo_kit import QUICK, REGISTRY, SEED, STANDARD_ORIGINS, clip, standard_names
from trajlab.errors import ConfigError

torch.set_num_threads(1)


def test_the_zoo_has_the_standard_backbones_the_issue_asks_for() -> None:
    standard = standard_names()
    assert len(standard) >= 7, standard
    assert {"r3d", "mc3", "r2plus1d", "s3d"} <= set(standard)  # 3D CNNs of each kind
    transformers = [e.name for e in REGISTRY if zoo.origin_of(e) == "transformers"]
    assert {"videomae", "timesformer", "vivit"} <= set(transformers)
    for e in REGISTRY:  # every encoder says where it comes from
        assert zoo.origin_of(e) in (*STANDARD_ORIGINS, "seed") or e.source, e.name
    for seed_name in zoo.SEED_ENCODERS:  # the seed's own, once they are registered
        if seed_name in REGISTRY:
            assert zoo.origin_of(REGISTRY.get(seed_name)) == "seed"


def _check_contract(enc: VideoEncoder, size: zoo.InputSize, batch: int) -> None:
    out = enc(clip(size, batch))
    assert out.pooled.shape == (batch, enc.out_dim)
    assert list(out.taps) == list(enc.taps)  # the taps it declares, in its order
    strides = []
    for name, spec in enc.taps.items():
        t, h, w = size.frames // spec.temporal_stride, size.height // spec.spatial_stride, \
            size.width // spec.spatial_stride
        assert out.taps[name].shape == (batch, spec.channels, t, h, w), name
        strides.append(spec.temporal_stride * spec.spatial_stride)
    assert strides == sorted(strides)  # finest first


@pytest.mark.parametrize("name", REGISTRY.names())
def test_each_encoder_builds_at_quick_size_keeps_the_contract_and_learns(name: str) -> None:
    enc = zoo.build(name, QUICK)
    _check_contract(enc, QUICK, batch=2)
    # One training step: every output depends on the parameters and gradients are finite.
    enc.train()
    out = enc(clip(QUICK, 2))
    loss = out.pooled.pow(2).mean() + sum(t.pow(2).mean() for t in out.taps.values())
    loss.backward()
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", standard_names())
def test_each_standard_backbone_builds_at_seed_size(name: str) -> None:
    with torch.no_grad():
        _check_contract(zoo.build(name, SEED), SEED, batch=1)


@pytest.mark.parametrize(
    ("name", "args", "words"),
    [
        ("r3d", {"frames": 12}, ["r3d", "frames", "multiple of 8"]),
        ("s3d", {"height": 48}, ["s3d", "height", "multiple of 32"]),
        ("videomae", {"width": 48}, ["videomae", "square"]),
        ("timesformer", {"hidden": 30, "heads": 4}, ["timesformer", "hidden", "heads"]),
    ],
)
def test_a_size_the_encoder_cannot_take_is_a_config_error_naming_it(
    name: str, args: dict, words: list[str]
) -> None:
    kwargs = {**QUICK.kwargs(), **args}
    with pytest.raises(ConfigError) as err:
        REGISTRY.build(name, **kwargs)
    for word in words:
        assert word in str(err.value)


def test_width_and_depth_knobs_change_the_network() -> None:
    small = zoo.build("r3d", QUICK, {"widths": (8, 8, 16, 16), "blocks": (1, 1, 1, 1)})
    default = zoo.build("r3d", QUICK)
    assert small.out_dim == 16
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters()) / 10
    wide = zoo.build("s3d", QUICK, {"width_mult": 0.5})
    assert wide.out_dim == 512
    deep = zoo.build("vivit", QUICK, {"layers": 3})
    assert list(deep.taps) == ["block1", "block2", "block3"]

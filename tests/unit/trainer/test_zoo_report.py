"""What the zoo says about each encoder: ONNX parity, FLOPs, perception, and the branch gate."""

from __future__ import annotations

import pytest
import torch

from services.trainer import zoo
from services.trainer.encoders.contract import TapSpec, VideoEncoder, VideoFeatures
from services.trainer.registry import Registry
from tests.unit.trainer.zoo_kit import QUICK, REGISTRY
from trajlab.errors import ConfigError

torch.set_num_threads(1)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_each_encoder_exports_alone_with_parity(name: str) -> None:
    entry = zoo.describe(name, QUICK)
    assert entry.onnx_parity is True, entry.parity_detail
    assert entry.flops > entry.params > 0  # every weight is used at least once per clip
    assert entry.input_size == "9x16x32x32"


def test_flops_are_counted_at_the_clip_size_asked_for() -> None:
    small = zoo.describe("r3d", QUICK, parity=False)
    big = zoo.describe("r3d", QUICK._replace(height=64, width=64), parity=False)
    assert big.params == small.params
    assert 3.5 < big.flops / small.flops < 4.5  # 4x the pixels, same network


def test_perception_attaches_to_a_per_frame_fine_tap_only() -> None:
    fine = {"a": TapSpec(16, 1, 2), "b": TapSpec(32, 2, 4)}
    assert zoo.perception_fit(fine) == (True, "tap a (every frame, stride 2 px)")
    ok, why = zoo.perception_fit({"a": TapSpec(16, 2, 2)})
    assert not ok and "every frame" in why
    ok, why = zoo.perception_fit({"a": TapSpec(16, 1, 8)})
    assert not ok and "spatial stride 8" in why
    assert zoo.perception_fit({}) == (False, "no taps")
    # What the standard backbones give: the ResNets keep every frame in layer1, S3D's stem
    # halves time, TimeSformer keeps a token per frame at 4 px patches, VideoMAE's tubelets span 2.
    verdicts = {n: zoo.describe(n, QUICK, parity=False).perception for n in
                ("r3d", "mc3", "r2plus1d", "s3d", "timesformer", "videomae", "vivit")}
    assert verdicts == {"r3d": True, "mc3": True, "r2plus1d": True, "s3d": False, "timesformer": True,
                        "videomae": False, "vivit": False}


class _Odd(VideoEncoder):
    """A tiny encoder whose ``op`` decides whether it can be exported with parity."""

    def __init__(self, op) -> None:
        super().__init__()
        self.op = op
        self.proj = torch.nn.Linear(1, 4)
        self.out_dim, self.taps = 4, {}

    def forward(self, clip: torch.Tensor) -> VideoFeatures:
        return VideoFeatures(self.proj(self.op(clip.mean(dim=(1, 2, 3, 4))[:, None])), {})


def _registry() -> Registry:
    reg: Registry = Registry("encoder")
    reg.register("no_onnx_op")(lambda **_: _Odd(torch.special.bessel_j0))  # no ONNX translation
    reg.register("data_branch")(lambda **_: _Odd(lambda x: x * 2 if x.sum() > 0 else x))  # not traceable
    reg.register("noisy")(lambda **_: _Odd(lambda x: x + torch.randn_like(x)))  # exports, disagrees
    return reg


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no_onnx_op", "No ONNX function found for <OpOverload(op='prims.bessel_j0'"),
        ("data_branch", "Could not guard on data-dependent expression"),
        ("noisy", "max abs difference"),
    ],
)
def test_a_branch_with_an_encoder_that_cannot_be_exported_is_refused_with_the_reason(
    name: str, reason: str
) -> None:
    size = zoo.InputSize(3, 8, 16, 16)
    with pytest.raises(zoo.NotExportable) as err:
        zoo.require_exportable(name, size, {}, registry=_registry())
    msg = str(err.value)
    assert f"encoder {name}: cannot be used in a branch" in msg and "ONNX" in msg and reason in msg
    assert "3x8x16x16" in msg
    assert isinstance(err.value, ConfigError)  # a config error: refused at branch load, before training


def test_require_exportable_passes_a_standard_backbone_and_names_bad_config() -> None:
    assert zoo.require_exportable("mc3", tuple(QUICK), {"blocks": [1, 1, 1, 1]}).ok
    with pytest.raises(ConfigError, match=r"unknown 'nope'; registered: .*r3d"):
        zoo.require_exportable("nope", QUICK, {})
    with pytest.raises(ConfigError, match="encoder r3d: cannot be built with encoder_args"):
        zoo.require_exportable("r3d", QUICK, {"depth": 5})
    with pytest.raises(ConfigError, match="encoder r3d: frames must be a multiple of 8"):
        zoo.require_exportable("r3d", QUICK._replace(frames=12), {})

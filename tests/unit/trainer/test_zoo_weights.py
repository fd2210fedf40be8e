"""A branch's ``weights:`` file loads into its encoder (the encoder's own state dict, or the library
network a standard backbone wraps), and bad files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.trainer import zoo
from services.trainer.encoders.weights import load_encoder_weights
from tests.unit.trainer.zoo_kit import QUICK, clip
from trajlab.errors import ConfigError

torch.set_num_threads(1)


def _inner(enc: torch.nn.Module) -> torch.nn.Module:
    return enc.net if hasattr(enc, "net") else enc.model


@pytest.mark.parametrize(("name", "suffix"), [("r3d", ".pth"), ("s3d", ".pt"), ("videomae", ".safetensors")])
def test_weights_from_a_local_file_give_the_saved_network(name: str, suffix: str, tmp_path: Path) -> None:
    torch.manual_seed(7)
    trained = zoo.ENCODERS.build(name, **QUICK.kwargs()).eval()
    path = tmp_path / f"{name}{suffix}"
    state = _inner(trained).state_dict()
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    loaded = zoo.build(name, QUICK)  # built with seed 0: other init
    load_encoder_weights(loaded, path, name=name)
    fresh = zoo.build(name, QUICK)
    x = clip(QUICK, 1)
    with torch.no_grad():
        want = trained(x).pooled
        assert torch.allclose(loaded(x).pooled, want, atol=1e-6)
        assert not torch.allclose(fresh(x).pooled, want, atol=1e-6)


def test_a_torchvision_style_file_with_a_classifier_loads(tmp_path: Path) -> None:
    enc = zoo.build("r3d", QUICK)
    state = dict(enc.net.state_dict())
    state["fc.weight"] = torch.zeros(400, 128)  # torchvision's Kinetics classifier: not ours, ignored
    state["fc.bias"] = torch.zeros(400)
    torch.save(state, tmp_path / "r3d.pth")
    load_encoder_weights(zoo.build("r3d", QUICK), tmp_path / "r3d.pth", name="r3d")


def test_a_missing_weights_file_is_a_config_error_naming_the_field_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "r3d_18.pth"
    with pytest.raises(ConfigError) as err:
        load_encoder_weights(zoo.build("r3d", QUICK), missing, name="r3d")
    assert str(err.value).startswith("weights: ")
    assert str(missing) in str(err.value)
    assert "does not exist" in str(err.value)


def test_a_file_of_another_width_is_refused_with_the_parameters_that_differ(tmp_path: Path) -> None:
    torch.save(zoo.build("mc3", QUICK).net.state_dict(), tmp_path / "mc3.pth")
    with pytest.raises(ConfigError) as err:
        load_encoder_weights(zoo.build("mc3", QUICK, {"widths": (8, 16, 32, 64)}), tmp_path / "mc3.pth",
                             name="mc3")
    msg = str(err.value)
    assert msg.startswith("weights: ") and "mc3" in msg and "shapes differ" in msg
    assert "stem.0.weight" in msg  # names a parameter and both shapes
    assert "(16, 9, 3, 7, 7) in file" in msg


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"weights: cannot read weights file .*junk.pth"):
        load_encoder_weights(zoo.build("r2plus1d", QUICK), tmp_path / "junk.pth", name="r2plus1d")


def test_the_encoders_own_state_dict_loads_too(tmp_path: Path) -> None:
    torch.manual_seed(3)
    trained = zoo.build("timesformer", QUICK).eval()
    torch.save(trained.state_dict(), tmp_path / "enc.pt")  # names start with "model."
    loaded = zoo.build("timesformer", QUICK).eval()
    load_encoder_weights(loaded, tmp_path / "enc.pt", name="timesformer")
    x = clip(QUICK, 1)
    with torch.no_grad():
        assert torch.allclose(loaded(x).pooled, trained(x).pooled, atol=1e-6)


def test_the_old_encoder_args_weights_field_says_where_it_moved(tmp_path: Path) -> None:
    from services.trainer.branch import known_parts
    from trajlab.profiles import load_branches

    (tmp_path / "r3d.pth").write_bytes(b"")
    (tmp_path / "b.yaml").write_text(
        "branches:\n- {name: z1, encoder: r3d, enhancement: none, encoder_args: {weights: r3d.pth}}\n")
    with pytest.raises(ConfigError, match=r"encoder_args.weights: .*branch's own `weights:` field"):
        load_branches(tmp_path / "b.yaml", known=known_parts())

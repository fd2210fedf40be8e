"""Branches are data and the model has one schema: the branches YAML, the profile's ``model:``
section, the ModelArgs a checkpoint stores, and what older trainers wrote."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from services.trainer import checkpoint as ckpt
from services.trainer.branch import create_branch_model, known_parts, load_encoder_weights
from services.trainer.model_args import ModelArgs, ModelFormatError
from services.trainer.training import RunConfig, Trainer, TrainingFailed, model_args_for
from tests.unit.trainer import kit
from trajlab.errors import ConfigError
from trajlab.profiles import ModelConfig, load_branches, load_profile


class Crash(RuntimeError):
    pass


def write_branches(path: Path, *branches: dict) -> Path:
    path.write_text(yaml.safe_dump({"branches": list(branches)}))
    return path


def test_the_profile_model_section_is_what_the_checkpoint_stores() -> None:
    """Every key of the profile's model: section is a ModelArgs field of the same name, and the
    trainer copies it as it is (no renamed chain)."""
    fields = {f.name for f in dataclasses.fields(ModelArgs)}
    assert set(ModelConfig.model_fields) <= fields
    for name in ("quick", "seed"):
        profile = load_profile(name)
        cfg = RunConfig(branch=load_branches()["b1"], profile=profile, data_dir=Path("d"), run_dir=Path("r"),
                        model_repo=Path("m"))
        args = model_args_for(cfg)
        stored = ModelArgs.from_dict(args.to_dict())
        for key, value in profile.model.model_dump().items():
            if key == "encoder_args":
                assert stored.encoder_args == {k: tuple(v) for k, v in value.items()}
            else:
                assert getattr(stored, key) == value, key
    seed = load_profile("seed").model
    assert seed.sphere_fit is True and seed.camera_shift == 4  # ceil(3 x 1.3) pixels, the trained jitter
    assert load_profile("quick").model.sphere_fit is False


def test_the_seed_profiles_perception_off_runs_get_the_position_head_and_its_perception_runs_do_not() -> None:
    from services.trainer.branch import create_branch_model
    from services.trainer.seeds import ablated

    b1, seed = load_branches()["b1"], load_profile("seed")
    for ablation, has_head in (("", False), ("perception", True)):
        branch, profile = ablated(b1, seed, ablation)
        cfg = RunConfig(branch=branch, profile=profile, data_dir=Path("d"), run_dir=Path("r"), model_repo=Path("m"))
        model = create_branch_model(model_args_for(cfg))
        assert (model.position is not None) is has_head, branch.name
        assert model.extrapolate is not None  # the forecast prior: off the perception's track or the head's


def test_a_camera_shift_smaller_than_the_jitter_is_refused_naming_the_field(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("name: x\ndataset:\n  camera_jitter: 0.7\nmodel:\n  camera_shift: 1\n")
    with pytest.raises(ConfigError, match=r"model\.camera_shift must be 0 .* at least 3"):
        load_profile(p)
    # A shakier training camera (the augmentation) needs a wider shift too, and fresh clips.
    p.write_text(
        "name: x\ntraining:\n  fresh_clips_per_epoch: 64\n  augment_camera_jitter: 1.3\nmodel:\n  camera_shift: 1\n"
    )
    with pytest.raises(ConfigError, match=r"at least 4, the largest shift of training\.augment_camera_jitter 1\.3"):
        load_profile(p)
    p.write_text("name: x\ntraining:\n  augment_camera_jitter: 1.3\n")
    with pytest.raises(ConfigError, match=r"augment_camera_jitter needs training\.fresh_clips_per_epoch"):
        load_profile(p)
    p.write_text("name: x\nmodel:\n  sphere_radius: 1.0\n")  # the dataset's key is not the model's
    with pytest.raises(ConfigError, match=r"model\.sphere_radius"):
        load_profile(p)
    p.write_text("name: x\ntraining:\n  fit_sphere: true\n")  # the old name is gone, not translated
    with pytest.raises(ConfigError, match=r"training\.fit_sphere"):
        load_profile(p)


def test_model_args_of_an_older_trainer_are_refused_with_a_message_to_retrain() -> None:
    old = {  # what format 10 stored: channels at the top, no format
        "encoder": "i3d", "enhancement": "compression", "frames": 16, "height": 32, "width": 32,
        "horizon": 4, "channels": [8, 16, 32], "track": True, "sphere_fit": False,
    }
    with pytest.raises(ModelFormatError, match=r"older trainer.*retrain the branch"):
        ModelArgs.from_dict(old)
    with pytest.raises(ModelFormatError, match="retrain"):
        ModelArgs.from_dict({**old, "format": 10})
    args = ModelArgs(encoder="i3d", enhancement="none", frames=8, height=24, width=24, horizon=2,
                     encoder_args={"channels": [4, 8, 8]})
    assert ModelArgs.from_dict(args.to_dict()) == args and args.encoder_args == {"channels": (4, 8, 8)}


def test_a_checkpoint_of_an_older_trainer_is_not_resumed_and_says_to_retrain(
    tmp_path: Path, tiny_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(epoch: int) -> None:
        raise Crash("simulated crash after epoch 1")

    cfg = kit.run_config(tmp_path, tiny_data, "b4", epochs=2)
    with pytest.raises(TrainingFailed):
        Trainer(cfg, on_epoch_end=crash).run()
    crashed = Trainer(cfg)
    _epoch, path = ckpt.list_checkpoints(crashed.ckpt_dir)[-1]
    state = torch.load(path, weights_only=True)
    state["format"] = 10
    torch.save(state, path)
    with caplog.at_level("WARNING"):
        crashed.run()
    assert "older trainer" in caplog.text and "retrain" in caplog.text
    assert crashed.status.state == "done" and crashed.status.resumed_from_epoch == 0


def test_a_branches_file_is_validated_against_the_registered_parts(tmp_path: Path) -> None:
    base = {"name": "mine", "encoder": "i3d", "enhancement": "none"}
    known = known_parts()
    assert {"i3d", "dual_pathway"} <= set(known.encoders)
    p = write_branches(tmp_path / "b.yaml", {**base, "encoder": "r3dd"})
    with pytest.raises(ConfigError, match=r"branches\[0\] \(mine\)\.encoder: unknown 'r3dd'; registered: .*dual_pathway, .*i3d"):
        load_branches(p, known=known)
    p = write_branches(tmp_path / "b.yaml", base, {**base, "name": "two", "enhancement": "magic"})
    with pytest.raises(ConfigError, match=r"branches\[1\] \(two\)\.enhancement: unknown 'magic'; registered: compression, none, text_alignment"):
        load_branches(p, known=known)
    p = write_branches(tmp_path / "b.yaml", {**base, "encoder_args": {"alpha": 2}})
    with pytest.raises(ConfigError, match=r"encoder_args: i3d takes channels, keypoints, pool_grid; unknown alpha"):
        load_branches(p, known=known)
    p = write_branches(tmp_path / "b.yaml", {**base, "weights": "missing.pt"})
    with pytest.raises(ConfigError, match=rf"weights: no such file {tmp_path / 'missing.pt'}"):
        load_branches(p, known=known)
    p = write_branches(tmp_path / "b.yaml", {**base, "perception": False})
    with pytest.raises(ConfigError, match=r"branches\.0\.perception"):
        load_branches(p, known=known)
    assert sorted(load_branches(known=known)) == ["b1", "b2", "b3", "b4"]  # the seed branches are the default


def test_a_branch_names_its_encoders_initial_weights(tmp_path: Path) -> None:
    args = ModelArgs(encoder="i3d", enhancement="none", frames=8, height=24, width=24, horizon=2,
                     encoder_args={"channels": (4, 8, 8)})
    torch.manual_seed(1)
    source = create_branch_model(args)
    torch.save(source.encoder.state_dict(), tmp_path / "enc.pt")
    torch.manual_seed(2)
    model = create_branch_model(args)
    load_encoder_weights(model, tmp_path / "enc.pt")
    for (name, a), b in zip(source.encoder.state_dict().items(), model.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other = create_branch_model(dataclasses.replace(args, encoder_args={"channels": (8, 8, 8)}))
    with pytest.raises(ConfigError, match=r"weights: .*enc\.pt is not a state dict of encoder 'i3d'"):
        load_encoder_weights(other, tmp_path / "enc.pt")


def test_a_custom_branch_trains_one_epoch_and_exports(tmp_path: Path, tiny_data: Path) -> None:
    """A branch of a user's file: the dual-pathway encoder with its own alpha, the track
    perception off, no enhancement; trained one epoch, exported through the parity gate."""
    p = write_branches(tmp_path / "mine.yaml", {
        "name": "dp-plain", "encoder": "dual_pathway", "enhancement": "none", "track": False,
        "encoder_args": {"alpha": 2}, "describer_backend": "analytic",
    })
    branch = load_branches(p, known=known_parts())["dp-plain"]
    cfg = dataclasses.replace(kit.run_config(tmp_path, tiny_data, "b1", publish=True, epochs=1), branch=branch)
    t = Trainer(cfg)
    res = t.run()
    assert res["model_version"] == 1 and (cfg.model_repo / "dp-plain" / "1" / "model.onnx").is_file()
    assert t.model is not None and t.model.perception is None and "track" not in res
    assert t.model.args.encoder == "dual_pathway" and t.model.encoder.alpha == 2
    assert t.model.args.encoder_args == {"alpha": 2, "channels": (4, 8, 8)}  # the profile's channels too
    assert res["onnx_parity_max_abs_diff"] <= 1e-4


def test_trajlab_run_takes_a_branches_file_or_seed_branch_names(tmp_path: Path) -> None:
    """`trajlab run --branches FILE` runs every branch of the file and hands the file to the
    trainers and the describer; names pick seed branches; a bad file fails before anything starts."""
    from trajlab_cli.runner import make_plan

    p = write_branches(tmp_path / "mine.yaml", {"name": "dp-plain", "encoder": "dual_pathway",
                                                "enhancement": "none", "track": False})
    plan = make_plan("quick", branches=None, branches_file=p, root=tmp_path, use_prometheus=False,
                     threads_per_trainer=1)
    assert plan.branches == ["dp-plain"] and plan.branches_file == p.resolve()
    plan = make_plan("quick", branches=["b1", "b4"], root=tmp_path, use_prometheus=False, threads_per_trainer=1)
    assert plan.branches == ["b1", "b4"] and plan.branches_file is None
    with pytest.raises(ConfigError, match=r"--branches: unknown branch\(es\) \['b9'\]"):
        make_plan("quick", branches=["b9"], root=tmp_path, use_prometheus=False, threads_per_trainer=1)
    bad = write_branches(tmp_path / "bad.yaml", {"name": "x", "encoder": "nope", "enhancement": "none"})
    with pytest.raises(ConfigError, match=r"\.encoder: unknown 'nope'; registered:"):
        make_plan("quick", branches=None, branches_file=bad, root=tmp_path, use_prometheus=False,
                  threads_per_trainer=1)

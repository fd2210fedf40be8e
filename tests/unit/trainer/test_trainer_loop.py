"""The training loop: learns, resumes bit-for-bit after a crash, fails loudly on NaN, publishes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from services.trainer import checkpoint as ckpt
from services.trainer.training import Trainer, TrainingFailed
from tests.unit.trainer import kit
from trajlab.data import load_dataset
from trajlab.modelrepo import ModelMetadata, list_versions, read_metadata, sha256_file
from trajlab.preprocess import to_model_input


class Crash(RuntimeError):
    pass


def _weights(t: Trainer) -> dict[str, torch.Tensor]:
    assert t.model is not None
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


def test_loss_decreases_on_a_tiny_set(tmp_path: Path, tiny_data: Path) -> None:
    t = Trainer(kit.run_config(tmp_path, tiny_data, "b4", epochs=4, lr=2e-3))
    res = t.run()
    losses = [h["train_loss"] for h in res["history"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0], losses
    for h in res["history"]:
        for key in (
            "val_loss",
            "val_accuracy",
            "forecast_mae",
            "forecast_rmse",
            "forecast_mae_pct",
            "ade",
            "fde",
        ):
            assert np.isfinite(h[key]), key
        assert h["clips_per_second"] > 0


@pytest.mark.parametrize("corrupt_newest", [False, True])
def test_resume_after_a_crash_reaches_bit_identical_weights(
    tmp_path: Path, tiny_data: Path, corrupt_newest: bool
) -> None:
    straight = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="straight"))
    straight.run()

    def crash_after_2(epoch: int) -> None:
        if epoch == 2:
            raise Crash("simulated crash after the epoch-2 checkpoint")

    crashed = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="crashed"), on_epoch_end=crash_after_2)
    with pytest.raises(TrainingFailed):
        crashed.run()
    if corrupt_newest:
        newest = ckpt.list_checkpoints(crashed.ckpt_dir)[-1][1]
        newest.write_bytes(b"not a checkpoint")

    resumed = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="crashed"))
    resumed.run()
    assert resumed.status.resumed_from_epoch == (1 if corrupt_newest else 2)
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ after resume: {different[:5]}"
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]


def test_nan_loss_stops_the_run_and_publishes_nothing(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.trainer import step_loop  # the step loop computes the loss

    real = step_loop.combined_loss

    def poisoned(*args, **kwargs):  # type: ignore[no-untyped-def]
        total, parts = real(*args, **kwargs)
        return total * float("nan"), parts

    monkeypatch.setattr(step_loop, "combined_loss", poisoned)
    cfg = kit.run_config(tmp_path, tiny_data, "b4", publish=True)
    t = Trainer(cfg)
    with pytest.raises(TrainingFailed, match="loss is nan"):
        t.run()
    assert t.status.state == "failed" and "loss is nan" in t.status.error
    status = json.loads((cfg.run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert list_versions(cfg.model_repo, "b4") == []
    assert not (cfg.run_dir / "results.json").exists()


@pytest.mark.usefixtures("fake_text_encoder")
def test_published_model_metadata_and_onnx_outputs(tmp_path: Path, tiny_data: Path) -> None:
    cfg = kit.run_config(tmp_path, tiny_data, "b3", publish=True, epochs=2)
    t = Trainer(cfg)
    res = t.run()
    assert res["model_version"] == 1 and res["zero_shot_accuracy"] >= 0 and "MiniLM" in res["text_encoder"]
    assert list_versions(cfg.model_repo, "b3") == [1]
    assert not [p for p in (cfg.model_repo / "b3").iterdir() if p.name.startswith(".tmp")]
    vdir = cfg.model_repo / "b3" / "1"
    meta = read_metadata(vdir, root=cfg.model_repo)
    raw = json.loads((vdir / "metadata.json").read_text())
    assert set(raw) == set(ModelMetadata.model_fields)  # every field present
    ds = load_dataset(tiny_data)
    assert meta.dataset_manifest_sha256 == ds.manifest_sha256
    assert meta.model_sha256 == sha256_file(vdir / "model.onnx")
    assert meta.opset >= 17 and meta.profile == "tiny" and meta.forecast_horizon == 4
    assert (meta.input.frames, meta.input.height, meta.input.width) == (8, 24, 24)
    # The track readout is on: the model exports its own observed track and its confidence.
    assert [o.name for o in meta.outputs] == [
        "probabilities", "forecast", "embedding", "track", "track_confidence"
    ]
    assert meta.has_track
    assert meta.branch_config["encoder"] == "i3d" and meta.branch_config["enhancement"] == "text_alignment"
    for key in ("accuracy", "mean_class_accuracy", "forecast_mae", "forecast_mae_pct", "ade", "fde"):
        assert key in meta.validation_metrics
    # The track readout (on by default): its error on the frames seen, and the physics
    # baselines given that same estimated track, beside the ones given the true positions.
    ds_val = load_dataset(tiny_data).val
    track = res["track"]
    assert track["observed_mae"] > 0 and track["observed_mae_pct"] > 0
    assert [b["name"] for b in track["baselines"]] == [
        b["name"] for b in res["baselines"] if b["name"] != "chance"
    ]
    # The track classifier (on by default) scored alone, beside the model's accuracy.
    assert 0.0 <= track["classifier_accuracy"] <= 1.0
    own = {b["name"]: b for b in track["baselines"]}
    truth = {b["name"]: b for b in res["baselines"]}
    # A noisy track cannot beat the true positions on the motion a baseline is exact for.
    assert own["constant_velocity"]["forecast_mae"] > truth["constant_velocity"]["forecast_mae"]
    assert len(ds_val.labels) == res["samples"]

    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["clip"]
    assert sess.get_inputs()[0].shape[0] == "batch"
    x = to_model_input(ds.val.clips, meta.input.mean, meta.input.std)
    probs, forecast, emb, track_out, confidence = sess.run(None, {"clip": x})
    n = len(x)
    assert probs.shape == (n, 4) and forecast.shape == (n, 4, 3) and emb.shape == (n, meta.embedding_dim)
    assert track_out.shape == (n, 8, 3) and confidence.shape == (n, 8)
    assert ((confidence >= 0) & (confidence <= 1)).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # The exported forecast is in world units: it matches the PyTorch model's world forecast.
    ref = t.predict(t.model, ds.val.clips)  # type: ignore[arg-type]
    np.testing.assert_allclose(forecast, ref["forecast"], atol=1e-4)
    np.testing.assert_allclose(probs.argmax(1), ref["logits"].argmax(1))


def test_the_depth_cues_and_the_parametric_prior_train_and_export_through_the_parity_gate(
    tmp_path: Path, tiny_data: Path
) -> None:
    from services.trainer.forecast_priors import ParametricExtrapolation

    cfg = kit.run_config(tmp_path, tiny_data, "b4", publish=True, epochs=2)
    t = Trainer(cfg)
    res = t.run()
    assert res["model_version"] == 1 and t.model.perception.cues is not None  # on by default
    assert isinstance(t.model.extrapolate, ParametricExtrapolation)  # on by default
    assert t.model.args.forecast_prior == "parametric"
    assert t.model.extrapolate.refits == 3  # with its robust re-fits, through the parity gate below
    assert t.model.perception.cues.out.weight.abs().sum() > 0  # trained away from its zero start
    vdir = cfg.model_repo / "b4" / "1"
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    ds = load_dataset(tiny_data)
    meta = read_metadata(vdir, root=cfg.model_repo)
    (forecast,) = sess.run(["forecast"], {"clip": to_model_input(ds.val.clips, meta.input.mean, meta.input.std)})
    ref = t.predict(t.model, ds.val.clips)  # type: ignore[arg-type]
    np.testing.assert_allclose(forecast, ref["forecast"], atol=1e-4)


def test_on_jittered_clips_the_camera_shift_is_taken_off_the_track_and_exported(tmp_path: Path) -> None:
    """Clips rendered with camera jitter: the trainer builds the shift estimator (the tiny set
    has no jitter and builds none), trains with the mask target moved where the image shows the
    sphere, and the export passes the parity gate with it; off by configuration, none."""
    import dataclasses

    from services.trainer.perception.camera_shift import CameraShift
    from services.trainer.training import model_args_for
    from trajlab.data import build_dataset
    from trajlab.profiles import Profile

    jittered = kit.TINY_DATASET.model_copy(update={"camera_jitter": 0.4})
    data = build_dataset(jittered, tmp_path / "data")

    def config(run: str, **model: object) -> object:
        cfg = kit.run_config(tmp_path, data, "b1", publish=True, run=run, epochs=1, model=model)
        return dataclasses.replace(
            cfg, profile=Profile(name="tiny-jitter", dataset=jittered, training=cfg.profile.training,
                                 model=cfg.profile.model)
        )

    cfg = config("on", sphere_fit=True, camera_shift=2)
    t = Trainer(cfg)  # type: ignore[arg-type]
    res = t.run()
    assert res["model_version"] == 1  # exported: the parity gate passed
    assert t.model.args.camera_shift == 2  # ceil(3 x 0.4) pixels, the renderer's margin
    assert isinstance(t.model.perception.camera_shift, CameraShift)
    # The sphere is fitted to its pixels (sphere_fit, as the seed profile has it) and exports with the rest.
    assert t.model.args.sphere_fit and t.model.perception.sphere_fit is not None
    vdir = tmp_path / "models" / "b1" / "1"
    sess = ort.InferenceSession(str(vdir / "model.onnx"), providers=["CPUExecutionProvider"])
    ds = load_dataset(data)
    meta = read_metadata(vdir, root=tmp_path / "models")
    (forecast,) = sess.run(["forecast"], {"clip": to_model_input(ds.val.clips, meta.input.mean, meta.input.std)})
    ref = t.predict(t.model, ds.val.clips)  # type: ignore[arg-type]
    np.testing.assert_allclose(forecast, ref["forecast"], atol=1e-4)
    # Its ten Gauss-Newton steps are two ONNX Loops, not ten copies (unrolled, they made the export 4-9x slower).
    graph = onnx.load(str(vdir / "model.onnx")).graph
    assert sum(node.op_type == "Loop" for node in graph.node) == 2
    assert len(graph.node) < 1200, len(graph.node)
    assert model_args_for(config("off", camera_shift=0)).camera_shift == 0  # type: ignore[arg-type]
    assert model_args_for(config("nofit", sphere_fit=False)).sphere_fit is False  # type: ignore[arg-type]
    assert model_args_for(kit.run_config(tmp_path, data, "b1")).camera_shift == 0  # no jitter in the tiny set


def test_a_completed_run_is_not_retrained(tmp_path: Path, tiny_data: Path) -> None:
    cfg = kit.run_config(tmp_path, tiny_data, "b4", publish=True, epochs=1)
    first = Trainer(cfg).run()
    again = Trainer(cfg)
    assert again.status.state == "done" and again.status.model_version == 1
    assert again.run()["created_at"] == first["created_at"]
    assert list_versions(cfg.model_repo, "b4") == [1]
    stamped = list(cfg.run_dir.glob("results-*Z.json"))
    assert len(stamped) == 1


def test_checkpoint_of_another_architecture_is_skipped_not_fatal(
    tmp_path: Path, tiny_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def crash(epoch: int) -> None:
        raise Crash("simulated crash after epoch 1")

    cfg = kit.run_config(tmp_path, tiny_data, "b4", epochs=2)
    crashed = Trainer(cfg, on_epoch_end=crash)
    with pytest.raises(TrainingFailed):
        crashed.run()
    # What an upgrade that changes the layers leaves behind: same run, other weights.
    _epoch, path = ckpt.list_checkpoints(crashed.ckpt_dir)[-1]
    state = torch.load(path, weights_only=True)
    state["model"]["encoder.extra_layer.weight"] = torch.zeros(3)
    torch.save(state, path)
    with caplog.at_level("WARNING"):
        t = Trainer(cfg)
        t.run()
    assert "different model architecture" in caplog.text
    assert t.status.state == "done" and t.status.resumed_from_epoch == 0


def test_a_non_finite_gradient_stops_the_run_before_the_step_naming_the_parameter(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finite loss whose backward sends NaN into one weight: the run stops with that weight's
    name, the weights are not stepped into NaN, and nothing is published."""
    from services.trainer import step_loop

    real = step_loop.combined_loss

    def poisoned(out, *args, **kwargs):  # type: ignore[no-untyped-def]
        total, parts = real(out, *args, **kwargs)
        # sqrt at 0 has an infinite slope: finite value, NaN gradient into the classify head.
        return total + torch.sqrt(out.logits * 0.0).sum(), parts

    monkeypatch.setattr(step_loop, "combined_loss", poisoned)
    cfg = kit.run_config(tmp_path, tiny_data, "b1", publish=True)
    t = Trainer(cfg)
    with pytest.raises(TrainingFailed, match=r"the gradient of \S+ is not finite at epoch 1, step 1"):
        t.run()
    assert "not finite" in t.status.error
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    assert list_versions(cfg.model_repo, "b1") == []

"""Fresh training clips per epoch: new clips each epoch, never a validation or test clip, resume
still bit-for-bit, and the results say what the run trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.trainer.fresh_clips import fresh_clips
from services.trainer.training import Trainer, TrainingFailed, run_fingerprint
from tests.unit.trainer import kit
from trajlab.data import build_dataset, load_dataset
from trajlab.profiles import load_profile

# The tiny dataset with a held-out test split.
WITH_TEST = kit.TINY_DATASET.model_copy(update={"test_samples": 16})


class Crash(RuntimeError):
    pass


def _weights(t: Trainer) -> dict[str, torch.Tensor]:
    assert t.model is not None
    return {k: v.detach().clone() for k, v in t.model.state_dict().items()}


def _rows(clips: np.ndarray) -> set[bytes]:
    return {np.ascontiguousarray(c).tobytes() for c in clips}


def test_fresh_clips_are_new_each_epoch_and_never_a_stored_clip(tmp_path: Path) -> None:
    ds = load_dataset(build_dataset(WITH_TEST, tmp_path / "data"))
    assert ds.test is not None
    stored = {s: _rows(ds.split(s).clips) for s in ("train", "val", "test")}
    epochs = [fresh_clips(WITH_TEST, training_seed=0, epoch=e, n=24) for e in (1, 2, 3)]
    seen: set[bytes] = set()
    for f in epochs:
        rows = _rows(f.clips)
        assert len(rows) == 24, "clips repeat inside an epoch"
        for split, have in stored.items():
            assert not rows & have, f"a fresh clip is a stored {split} clip"
        assert not rows & seen, "an epoch repeats an earlier epoch's clips"
        seen |= rows
        assert np.bincount(f.labels, minlength=4).tolist() == [6, 6, 6, 6]
        assert f.positions.shape == (24, WITH_TEST.frames + WITH_TEST.horizon, 3)
    # Their trajectories are not the stored ones either (the scene is not what sets them apart).
    stored_pos = np.concatenate([ds.split(s).positions for s in ("train", "val", "test")])
    for f in epochs:
        gap = np.abs(f.positions[:, None] - stored_pos[None]).max(axis=(2, 3))
        assert gap.min() > 1e-3


def test_fresh_clips_depend_on_the_config_training_seed_and_epoch_only() -> None:
    a = fresh_clips(WITH_TEST, training_seed=0, epoch=2, n=8)
    b = fresh_clips(WITH_TEST, training_seed=0, epoch=2, n=8)
    assert np.array_equal(a.clips, b.clips) and np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.clips, fresh_clips(WITH_TEST, training_seed=1, epoch=2, n=8).clips)
    # A longer epoch starts with the same clips (each clip has its own generator).
    assert np.array_equal(a.clips, fresh_clips(WITH_TEST, training_seed=0, epoch=2, n=12).clips[:8])


def _camera_shifts(clips: np.ndarray, max_shift: int) -> np.ndarray:
    """Each frame's camera shift as the model reads it off the background: (N, T, 2) pixels."""
    from services.trainer.perception.camera_shift import CameraShift

    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255.0  # (N, C, T, H, W)
    with torch.no_grad():
        return CameraShift(max_shift)(x).numpy()


def test_jitter_augmentation_shakes_the_camera_of_fresh_clips_within_its_range() -> None:
    still = WITH_TEST.model_copy(update={"camera_jitter": 0.0, "height": 32, "width": 32})
    plain = fresh_clips(still, training_seed=0, epoch=1, n=128)
    shaken = fresh_clips(still, training_seed=0, epoch=1, n=128, max_jitter=1.5)
    assert np.array_equal(shaken.labels, plain.labels)
    assert np.abs(_camera_shifts(plain.clips, 4)).max() < 0.5  # the dataset's camera does not move
    moved = np.abs(_camera_shifts(shaken.clips, 5)).round()
    assert moved.max() >= 2 and moved.max() <= 5  # ceil(3 x 1.5) pixels at most
    assert (moved > 0).mean() > 0.2
    # Each chunk has its own jitter in [dataset's, ceiling], drawn from (seed, epoch) only.
    from services.trainer.fresh_clips import chunk_jitter

    draws = [chunk_jitter(still, 0, e, start, 1.5) for e in range(1, 6) for start in (0, 64)]
    assert all(0.0 <= j <= 1.5 for j in draws) and len(set(draws)) == len(draws)
    assert chunk_jitter(still, 0, 1, 0, 1.5) == draws[0]
    assert chunk_jitter(still, 0, 1, 0, 0.0) == 0.0  # no augmentation: the dataset's jitter
    again = fresh_clips(still, training_seed=0, epoch=1, n=128, max_jitter=1.5)
    assert np.array_equal(again.clips, shaken.clips)


def test_resume_with_fresh_clips_reaches_bit_identical_weights(tmp_path: Path, tiny_data: Path) -> None:
    fresh = {"fresh_clips_per_epoch": 16}
    straight = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="straight", **fresh))
    res = straight.run()

    def crash_after_2(epoch: int) -> None:
        if epoch == 2:
            raise Crash("simulated crash after the epoch-2 checkpoint")

    crashed = Trainer(
        kit.run_config(tmp_path, tiny_data, "b1", run="crashed", **fresh), on_epoch_end=crash_after_2
    )
    with pytest.raises(TrainingFailed):
        crashed.run()
    resumed = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="crashed", **fresh))
    resumed.run()
    assert resumed.status.resumed_from_epoch == 2
    a, b = _weights(straight), _weights(resumed)
    assert not [k for k in a if not torch.equal(a[k], b[k])], "weights differ after resume"
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]
    # 16 clips at batch 8: two steps an epoch, not the stored split's 24 clips' three.
    assert straight.status.steps_per_epoch == 2
    data = res["training_data"]
    assert data["source"] == "fresh_clips"
    assert data["clips_per_epoch"] == 16 and data["distinct_clips"] == 16 * 3


def test_fresh_clips_train_other_weights_than_the_stored_split(tmp_path: Path, tiny_data: Path) -> None:
    stored = Trainer(kit.run_config(tmp_path, tiny_data, "b1", run="stored", epochs=1))
    res = stored.run()
    assert res["training_data"]["source"] == "train_split"
    assert res["training_data"]["clips_per_epoch"] == 24
    fresh = Trainer(
        kit.run_config(tmp_path, tiny_data, "b1", run="fresh", epochs=1, fresh_clips_per_epoch=24)
    )
    fresh.run()
    a, b = _weights(stored), _weights(fresh)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_setting_off_keeps_existing_runs_fingerprints(tmp_path: Path, tiny_data: Path) -> None:
    cfg = kit.run_config(tmp_path, tiny_data)
    assert "fresh_clips_per_epoch" not in cfg.profile.training.model_dump()
    on = kit.run_config(tmp_path, tiny_data, fresh_clips_per_epoch=24)
    assert run_fingerprint(on) != run_fingerprint(cfg)


def test_the_quick_profile_trains_on_fresh_clips_at_the_stored_splits_cost() -> None:
    quick = load_profile("quick")
    stored_train = quick.dataset.samples - round(quick.dataset.samples * quick.dataset.val_fraction)
    assert 0 < quick.training.fresh_clips_per_epoch <= stored_train


def test_trajlab_train_says_what_the_run_trained_on(tmp_path: Path, tiny_data: Path) -> None:
    from typer.testing import CliRunner

    from trajlab_cli import app

    profile = kit.write_profile_yaml(
        tmp_path / "tiny.yaml", kit.tiny_profile(epochs=1, fresh_clips_per_epoch=16)
    )
    args = ["train", "--branch", "b1", "--profile", str(profile), "--threads", "1", "--no-export",
            "--data", str(tiny_data), "--run-dir", str(tmp_path / "run")]  # fmt: skip
    res = CliRunner().invoke(app, args, terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "trained on: 16 clips per epoch (fresh each epoch), 16 distinct clips" in res.output

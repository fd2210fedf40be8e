"""The step loop of a run: one epoch of training steps, then validation (a Trainer mixin).

The data order and every random draw of epoch e depend on (seed, e) only, and so do the
epoch's clips with ``training.fresh_clips_per_epoch`` (``fresh_clips.py``), so a resumed run
reaches the same weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from services.trainer.branch import BranchModel
from services.trainer.fresh_clips import fresh_clips
from services.trainer.losses import combined_loss, position_target, track_classifier_noise, track_target
from services.trainer.run_io import TrainingFailed, TrainingStopped, write_json_atomic
from trajlab.preprocess import to_model_input

log = logging.getLogger("services.trainer.training")


class StepLoop:
    """``Trainer._train_epoch`` and the clip and target preparation it shares with scoring."""

    def _train_epoch(
        self, model: BranchModel, optimiser: Any, scheduler: Any, train: Any, val: Any, epoch: int, steps: int
    ) -> None:
        from tqdm import tqdm

        t = self.cfg.profile.training
        started = time.monotonic()
        cpu_started = time.process_time()  # this process's CPU time (services/trainer/cost.py)
        if t.fresh_clips_per_epoch > 0:  # this epoch's own clips, from (dataset, seed, epoch) only
            train = fresh_clips(
                self.cfg.profile.dataset, t.seed, epoch, t.fresh_clips_per_epoch, t.augment_camera_jitter
            )
        n = len(train.labels)
        # The data order and every random draw of epoch e depend on (seed, e) only.
        gen = torch.Generator().manual_seed(t.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).numpy()
        flips = (torch.rand(n, generator=gen) < 0.5).numpy() if t.augment_flip else np.zeros(n, bool)
        torch.manual_seed(t.seed * 100_003 + epoch)
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(
            total=steps,
            desc=f"{self.cfg.branch.name} epoch {epoch}/{t.epochs}",
            disable=not self._progress_enabled(),
            leave=False,
            unit="step",
        )
        try:
            for step in range(steps):
                if self._stop.is_set():
                    raise TrainingStopped("stop requested")
                idx = np.sort(order[step * t.batch_size : (step + 1) * t.batch_size])
                loss_value, hits = self._train_step(model, optimiser, train, idx, flips[idx], epoch, step)
                loss_sum += loss_value * len(idx)
                correct += hits
                seen += len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
                self._update(step=step + 1)
        finally:
            bar.close()
        train_seconds = time.monotonic() - started
        lr = optimiser.param_groups[0]["lr"]
        scheduler.step()
        metrics = self._validate(model, val)
        duration = time.monotonic() - started
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "clips_per_second": seen / max(train_seconds, 1e-9),
            "learning_rate": lr,
            "duration_seconds": duration,
            "cpu_seconds": time.process_time() - cpu_started,
            **metrics,
        }
        self._record_epoch(epoch, steps, row)

    def _train_step(
        self, model: BranchModel, optimiser: Any, train: Any, idx: np.ndarray, flip: np.ndarray,
        epoch: int, step: int,
    ) -> tuple[float, int]:
        """One optimiser step on the clips ``idx`` (mirrored where ``flip``); (mean loss, correct)."""
        t = self.cfg.profile.training
        frames = self.cfg.profile.dataset.frames
        clips = np.asarray(train.clips[idx])
        positions = np.array(train.positions[idx], np.float32)
        if flip.any():
            # Mirror image columns; in world units that is x -> -x (camera at the origin).
            clips[flip] = clips[flip][:, :, :, ::-1]
            positions[flip, :, 0] *= -1.0
        x = self._model_input(clips)
        y = torch.from_numpy(np.asarray(train.labels[idx], np.int64))
        target = self._normalised_target(model, positions[:, frames:])
        observed = torch.from_numpy(positions[:, :frames])
        out = model(x)
        loss, _parts = combined_loss(
            out,
            y,
            target,
            forecast_weight=t.forecast_weight,
            aux_weight=t.aux_weight,
            track=track_target(model, observed, out.track.shift if out.track is not None else None),
            track_weight=t.track_weight,
            noisy_track_logits=(
                track_classifier_noise(model, out, observed) if t.track_classifier_noise else None
            ),
            positions=position_target(model, observed),
        )
        if not torch.isfinite(loss):
            raise TrainingFailed(
                f"loss is {loss.item()} at epoch {epoch}, step {step + 1}: stopping; "
                f"no model exported (try a lower lr than {t.lr})"
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        bad = _non_finite_gradient(model)
        if bad is not None:
            # A finite loss can still send NaN back (an op's unbounded slope); one such step would
            # turn every weight to NaN and the next forward into an obscure error, or a NaN model.
            raise TrainingFailed(
                f"the gradient of {bad} is not finite at epoch {epoch}, step {step + 1} "
                f"(loss {loss.item():.4g}): stopping before the step; no model exported, the last "
                "checkpoint is intact"
            )
        optimiser.step()
        return float(loss.detach()), int((out.logits.argmax(1) == y).sum())

    def _record_epoch(self, epoch: int, steps: int, row: dict[str, Any]) -> None:
        """An epoch's history row into the history, the status, history.json and the log."""
        t = self.cfg.profile.training
        with self._lock:
            self._history.append(row)
        remaining = t.epochs - epoch
        mean_epoch = float(np.mean([h["duration_seconds"] for h in self._history[-3:]]))
        self._update(
            epoch=epoch,
            step=steps,
            train_loss=row["train_loss"],
            val_loss=row["val_loss"],
            val_accuracy=row["val_accuracy"],
            forecast_mae=row["forecast_mae"],
            forecast_mae_pct=row["forecast_mae_pct"],
            clips_per_second=row["clips_per_second"],
            eta_seconds=remaining * mean_epoch,
            write=True,
        )
        write_json_atomic(self.run_dir / "history.json", self.history)
        log.info(
            "branch %s epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.3f, "
            "MAE %.2f %% of extent, %.1f clips/s",
            self.cfg.branch.name,
            epoch,
            t.epochs,
            row["train_loss"],
            row["val_loss"],
            row["val_accuracy"],
            row["forecast_mae_pct"],
            row["clips_per_second"],
        )


    def _model_input(self, clips: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(to_model_input(clips))
        if self.cfg.profile.training.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x

    @staticmethod
    def _normalised_target(model: BranchModel, future: np.ndarray) -> torch.Tensor:
        f = torch.from_numpy(np.asarray(future, np.float32))
        return (f - model.forecast_mean) / model.forecast_std


def _non_finite_gradient(model: torch.nn.Module) -> str | None:
    """The name of the first parameter whose gradient has a NaN or an infinity, or None."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads or bool(torch.isfinite(torch.stack([g.abs().sum() for g in grads])).all()):
        return None
    return next(
        name
        for name, p in model.named_parameters()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    )

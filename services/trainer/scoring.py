"""Scoring a model on the validation split: predictions, per-epoch validation, the final
evaluation with the physics baselines (a Trainer mixin)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from services.trainer.branch import BranchModel, count_parameters
from services.trainer.evaluation import (
    baseline_warnings,
    classification_metrics,
    evaluate_baselines,
    forecast_metrics,
    per_class_metrics,
    track_error,
)
from services.trainer.losses import combined_loss, position_target, track_target
from services.trainer.run_io import utc_stamp
from trajlab.profiles import CLASS_NAMES


class Scoring:
    """``Trainer.predict``, ``_validate`` and ``evaluate``."""

    def predict(
        self,
        model: BranchModel,
        clips: np.ndarray,
        batch_size: int = 64,
        *,
        labels: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Eval-mode outputs for uint8 clips (N, T, H, W, C).

        Returns logits, forecast (world units), embedding, text_logits (text alignment
        only), track and track_logits (with the track readout and its classifier) and,
        given labels and positions (N, T + horizon, 3), ``loss``: the training objective.
        """
        t = self.cfg.profile.training
        model.eval()
        outs: dict[str, list[np.ndarray]] = {
            "logits": [],
            "forecast": [],
            "embedding": [],
            "text_logits": [],
            "track": [],
            "track_logits": [],
        }
        loss_sum = 0.0
        with torch.no_grad():
            for i in range(0, len(clips), batch_size):
                x = self._model_input(clips[i : i + batch_size])
                o = model(x)
                outs["logits"].append(o.logits.numpy())
                outs["forecast"].append(model.to_world(o.forecast).numpy())
                outs["embedding"].append(o.embedding.numpy())
                if o.text_logits is not None:
                    outs["text_logits"].append(o.text_logits.numpy())
                if o.track is not None:  # the observed track in world units, as the heads read it
                    outs["track"].append(model.track_world(o.track).numpy())
                if o.track_logits is not None:
                    outs["track_logits"].append(o.track_logits.numpy())
                if labels is not None and positions is not None:
                    frames = self.cfg.profile.dataset.frames
                    y = torch.from_numpy(np.asarray(labels[i : i + batch_size], np.int64))
                    pos = np.asarray(positions[i : i + batch_size], np.float32)
                    loss, _ = combined_loss(
                        o,
                        y,
                        self._normalised_target(model, pos[:, frames:]),
                        forecast_weight=t.forecast_weight,
                        aux_weight=t.aux_weight,
                        track=track_target(
                            model,
                            torch.from_numpy(pos[:, :frames]),
                            o.track.shift if o.track is not None else None,
                        ),
                        track_weight=t.track_weight,
                        positions=position_target(model, torch.from_numpy(pos[:, :frames])),
                    )
                    loss_sum += float(loss) * len(x)
        res: dict[str, Any] = {k: np.concatenate(v) for k, v in outs.items() if v}
        if labels is not None:
            res["loss"] = loss_sum / max(len(clips), 1)
        return res

    def _validate(self, model: BranchModel, val: Any) -> dict[str, float]:
        frames = self.cfg.profile.dataset.frames
        labels = np.asarray(val.labels, np.int64)
        future = np.asarray(val.positions[:, frames:], np.float64)
        p = self.predict(model, val.clips, labels=labels, positions=np.asarray(val.positions))
        cls = classification_metrics(p["logits"].argmax(1), labels, len(CLASS_NAMES))
        fm = forecast_metrics(p["forecast"], future, np.asarray(val.extent))
        zero_shot = -1.0
        if "text_logits" in p:
            zero_shot = float((p["text_logits"].argmax(1) == labels).mean())
        track = {}
        if "track" in p:  # how well the readout locates the object in the frames it saw
            _, pct = track_error(p["track"], val.positions[:, :frames], val.extent)
            track = {"track_mae_pct": pct}
        return {
            "val_loss": float(p["loss"]),
            "val_accuracy": cls["accuracy"],
            "val_mean_class_accuracy": cls["mean_class_accuracy"],
            "zero_shot_accuracy": zero_shot,
            **fm,
            **track,
        }

    def evaluate(self, model: BranchModel, val: Any, text_encoder: str = "") -> dict[str, Any]:
        """The full evaluation on the validation split, with the physics baselines."""
        frames = self.cfg.profile.dataset.frames
        p = self.predict(model, val.clips)
        labels = np.asarray(val.labels, np.int64)
        positions = np.asarray(val.positions, np.float64)
        observed, future = positions[:, :frames], positions[:, frames:]
        extent = np.asarray(val.extent, np.float64)
        cls = classification_metrics(p["logits"].argmax(1), labels, len(CLASS_NAMES))
        fm = forecast_metrics(p["forecast"], future, extent)
        per_class = per_class_metrics(CLASS_NAMES, labels, p["forecast"], future, extent, cls["recall"])
        baselines = evaluate_baselines(observed, future, labels, extent, CLASS_NAMES)
        zero_shot = float((p["text_logits"].argmax(1) == labels).mean()) if "text_logits" in p else -1.0
        warnings = baseline_warnings(per_class, baselines)
        track: dict[str, Any] = {}
        if "track" in p:
            # The same physics given what the model itself saw (its estimated observed track)
            # rather than the true positions: a model that loses to these is not using its own
            # evidence well, which points to a bug rather than to the limits of its eyes.
            own = evaluate_baselines(p["track"], future, labels, extent, CLASS_NAMES)[1:]
            mae, pct = track_error(p["track"], observed, extent)
            track = {
                "track": {
                    "observed_mae": mae,
                    "observed_mae_pct": pct,
                    "baselines": own,
                    # The track classifier's share of the logits, scored alone.
                    "classifier_accuracy": (
                        float((p["track_logits"].argmax(1) == labels).mean()) if "track_logits" in p else -1.0
                    ),
                }
            }
            warnings += baseline_warnings(per_class, own, seen_as="the model's own observed track")
        b = self.cfg.branch
        return {
            "branch": {
                "name": b.name,
                "encoder": str(b.encoder),
                "enhancement": str(b.enhancement),
                "describer_backend": b.describer_backend,
            },
            "class_names": list(CLASS_NAMES),
            "confusion_matrix": [int(v) for v in cls["confusion"].ravel()],
            "accuracy": cls["accuracy"],
            "mean_class_accuracy": cls["mean_class_accuracy"],
            **fm,
            "per_class": per_class,
            "baselines": baselines,
            "zero_shot_accuracy": zero_shot,
            "text_encoder": text_encoder,
            "parameters": count_parameters(model),
            "samples": len(labels),
            "warnings": warnings,
            **track,
            "created_at": utc_stamp(),
            "profile": self.cfg.profile.name,
        }

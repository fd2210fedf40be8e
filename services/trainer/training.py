"""The training loop of one branch: train, checkpoint, evaluate, export, publish.

One :class:`Trainer` runs one branch on one profile. It is used by the gRPC service
(in a background thread) and by ``trajlab train`` (in the foreground): same code.

Crash safety: checkpoints are written atomically every ``checkpoint_every`` epochs
(and after the last). A new Trainer on the same run directory resumes from the
newest good checkpoint whose fingerprint (branch, profile, model arguments, text
encoder) and dataset hash match. The data order of epoch ``e`` is a permutation
drawn from a generator seeded with ``seed + e``, and the torch RNG is reseeded the
same way at every epoch start, so a resumed run reaches bit-identical weights on CPU.
Run directory layout::

    <run_dir>/checkpoints/<fingerprint>/ckpt-epoch-00005.pt    newest K kept
    <run_dir>/status.json                        atomically rewritten
    <run_dir>/history.json                       per-epoch metrics
    <run_dir>/results-<UTC stamp>.json           one per completed run
    <run_dir>/results.json                       the latest completed results
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.trainer import checkpoint as ckpt
from services.trainer.evaluation import (
    baseline_warnings,
    classification_metrics,
    evaluate_baselines,
    forecast_metrics,
    per_class_metrics,
    track_error,
)
from services.trainer.losses import combined_loss, track_target
from services.trainer.models import (
    BranchModel,
    ModelArgs,
    count_parameters,
    create_branch_model,
    set_conv_memory_format,
)
from trajlab.data.camera import Camera
from trajlab.data.render import RenderSettings
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input
from trajlab.profiles import CLASS_NAMES, BranchConfig, Profile

log = logging.getLogger(__name__)

STATES = ("idle", "training", "evaluating", "exporting", "done", "failed")
CHECKPOINT_FORMAT = 10  # 2: the track readout; 3: its full-resolution mask, depth map and the value plane;
# 4: the class-gated linear forecasters of the track (ClassGatedExtrapolation); 5: the depth cues (DepthCues);
# 6: the track classifier (TrackClassifier); 7: the parametric forecast prior (ParametricExtrapolation);
# 8: its robust re-fits (prior_refits); 9: the camera shift taken off the track (CameraShift);
# 10: each frame's sphere fitted to its pixels (SphereFit)


class TrainingFailed(RuntimeError):
    """The run stopped with an error (NaN loss, failed parity check, ...); no model was published."""


class TrainingStopped(RuntimeError):
    """The run was asked to stop (service shutdown); it resumes from its last checkpoint."""


def utc_stamp(compact: bool = False) -> str:
    fmt = "%Y%m%dT%H%M%SZ" if compact else "%Y-%m-%dT%H:%M:%SZ"
    return time.strftime(fmt, time.gmtime())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside ``path``, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class TrainerStatus:
    """A snapshot of where a run is (the fields of trainer.proto's TrainingStatus)."""

    branch: str
    profile: str
    state: str = "idle"
    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    train_loss: float = 0.0
    val_loss: float = 0.0
    val_accuracy: float = 0.0
    forecast_mae: float = 0.0  # world units
    forecast_mae_pct: float = 0.0  # percent of extent
    clips_per_second: float = 0.0
    eta_seconds: float = -1.0
    model_version: int = 0
    resumed_from_epoch: int = 0
    updated_at: str = ""
    error: str = ""


@dataclasses.dataclass
class RunConfig:
    """What a Trainer needs; paths are created on demand."""

    branch: BranchConfig
    profile: Profile
    data_dir: Path  # dataset cache for this profile
    run_dir: Path  # checkpoints, status, history, results
    model_repo: Path | str  # where the ONNX model is published: a directory or s3://bucket/prefix
    text_encoder: str = "auto"  # see services.trainer.text
    text_cache_dir: Path = Path("cache/text")
    threads: int | None = None  # overrides profile.training.threads when set
    status_interval_seconds: float | None = None  # overrides the profile when set
    progress: bool | None = None  # progress bar; None = only when stderr is a terminal
    publish: bool = True  # export and publish the ONNX model at the end
    data_source: str | None = None  # s3:// location of the dataset, fetched into data_dir (trajlab.store)
    on_saved: Callable[[Path], None] | None = None  # after each checkpoint/results save (rundir.RunStore)


def model_args_for(cfg: RunConfig, text_dim: int = 0, text_encoder: str = "") -> ModelArgs:
    d, t = cfg.profile.dataset, cfg.profile.training
    return ModelArgs(
        encoder=str(cfg.branch.encoder),
        enhancement=str(cfg.branch.enhancement),
        frames=d.frames,
        height=d.height,
        width=d.width,
        horizon=d.horizon,
        channels=tuple(t.channels),
        track=t.track,
        depth_cues=t.track and t.depth_cues,
        track_classifier=t.track and t.track_classifier,
        forecast_prior=t.forecast_prior,
        prior_refits=t.forecast_prior_refits if t.forecast_prior == "parametric" else 0,
        # The renderer's jitter is clipped to its margin, ceil(3 sigma) whole pixels.
        camera_shift=RenderSettings.from_config(d).jitter_margin if t.track and t.undo_camera_jitter else 0,
        sphere_fit=t.track and t.fit_sphere,
        focal_px=Camera(d.width, d.height, d.fov_degrees).focal_px if t.track else 0.0,
        object_radius=d.sphere_radius if t.track else 0.0,
        text_dim=text_dim,
        text_encoder=text_encoder,
    )


def run_fingerprint(cfg: RunConfig) -> str:
    """Identity of a run: the same fingerprint means the same training would be repeated."""
    payload = {
        "branch": cfg.branch.model_dump(mode="json"),
        # The status cadence changes nothing trained; leave it out.
        "profile": cfg.profile.model_dump(mode="json", exclude={"training": {"status_interval_seconds"}}),
        "text_encoder": cfg.text_encoder if str(cfg.branch.enhancement) == "text_alignment" else "",
        "format": CHECKPOINT_FORMAT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def completed_results(run_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The results of a completed run with this fingerprint, if the run directory has them."""
    path = Path(run_dir) / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("fingerprint") == fingerprint else None


class Trainer:
    """Trains one branch on one profile; thread-safe status for the service to read."""

    def __init__(
        self,
        cfg: RunConfig,
        *,
        on_update: Callable[[TrainerStatus], None] | None = None,
        stop_event: threading.Event | None = None,
        on_epoch_end: Callable[[int], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.fingerprint = run_fingerprint(cfg)
        self._on_update = on_update
        self._stop = stop_event or threading.Event()
        self._on_epoch_end = on_epoch_end
        self._lock = threading.Lock()
        t = cfg.profile.training
        self._status = TrainerStatus(
            branch=cfg.branch.name, profile=cfg.profile.name, total_epochs=t.epochs, updated_at=utc_stamp()
        )
        self._history: list[dict[str, Any]] = []
        self._results: dict[str, Any] | None = None
        self._last_status_write = 0.0
        self.model: BranchModel | None = None
        self.run_dir = Path(cfg.run_dir)
        # One checkpoint folder per run identity, so switching profile never mixes
        # (or rotates away) another run's checkpoints.
        self.ckpt_dir = self.run_dir / "checkpoints" / self.fingerprint[:16]
        done = completed_results(self.run_dir, self.fingerprint)
        if done is not None:
            self._results = done
            self._history = list(done.get("history", []))
            self._status.state = "done"
            self._status.epoch = t.epochs
            self._status.model_version = int(done.get("model_version", 0))
            self._fill_status_from_history()

    def has_checkpoint(self) -> bool:
        """True when a checkpoint of this run exists (a restarted service resumes from it)."""
        return bool(ckpt.list_checkpoints(self.ckpt_dir))

    # ---- state the service reads -------------------------------------------------
    @property
    def status(self) -> TrainerStatus:
        with self._lock:
            return dataclasses.replace(self._status)

    @property
    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(h) for h in self._history]

    @property
    def results(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._results is None else dict(self._results)

    def _fill_status_from_history(self) -> None:
        if self._history:
            h = self._history[-1]
            s = self._status
            s.train_loss, s.val_loss = h["train_loss"], h["val_loss"]
            s.val_accuracy, s.forecast_mae_pct = h["val_accuracy"], h["forecast_mae_pct"]
            s.forecast_mae, s.clips_per_second = h["forecast_mae"], h["clips_per_second"]

    def _update(self, *, write: bool = False, **fields: Any) -> None:
        with self._lock:
            for k, v in fields.items():
                setattr(self._status, k, v)
            self._status.updated_at = utc_stamp()
            snapshot = dataclasses.replace(self._status)
        interval = self.cfg.status_interval_seconds or self.cfg.profile.training.status_interval_seconds
        now = time.monotonic()
        if write or now - self._last_status_write >= interval:
            self._last_status_write = now
            write_json_atomic(self.run_dir / "status.json", dataclasses.asdict(snapshot))
        if self._on_update is not None:
            self._on_update(snapshot)

    # ---- the run -----------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train (or resume), evaluate, export, publish. Returns the results dict.

        Raises TrainingFailed (state "failed") or TrainingStopped (state back to "idle").
        """
        if self._results is not None:
            log.info("branch %s: results for this run are complete; not retraining", self.cfg.branch.name)
            return dict(self._results)
        try:
            return self._run()
        except TrainingStopped:
            self._update(state="idle", write=True)
            raise
        except Exception as exc:
            msg = str(exc) if isinstance(exc, TrainingFailed) else f"{type(exc).__name__}: {exc}"
            log.error("branch %s: training failed: %s", self.cfg.branch.name, msg)
            self._update(state="failed", error=msg, write=True)
            raise TrainingFailed(msg) from exc

    def _run(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.profile.training
        threads = cfg.threads if cfg.threads is not None else t.threads
        if threads > 0:
            torch.set_num_threads(threads)
        # Bit-identical resume needs deterministic kernels; warn_only keeps CPU ops
        # without a deterministic variant usable instead of raising.
        torch.use_deterministic_algorithms(True, warn_only=True)
        self._update(state="training", error="", write=True)
        t0 = time.monotonic()

        from trajlab.data import load_dataset
        from trajlab.store.datasets import prepare_dataset

        ds_path = prepare_dataset(
            cfg.profile.dataset, cfg.data_dir, cfg.data_source, progress=self._progress_enabled()
        )
        # build_dataset has just verified (or written) every file; skip a second sha256 pass.
        ds = load_dataset(ds_path, expected_config=cfg.profile.dataset, verify=False)
        train, val = ds.train, ds.val
        frames = cfg.profile.dataset.frames
        log.info(
            "branch %s: dataset %s (%d train / %d val clips) loaded in %.1f s",
            cfg.branch.name,
            ds_path,
            len(train.labels),
            len(val.labels),
            time.monotonic() - t0,
        )

        class_text, text_name = None, ""
        if str(cfg.branch.enhancement) == "text_alignment":
            from services.trainer.text import class_text_embeddings

            emb, text_name = class_text_embeddings(cfg.text_encoder, cfg.text_cache_dir)
            class_text = torch.from_numpy(emb)
        args = model_args_for(
            cfg, text_dim=0 if class_text is None else class_text.shape[1], text_encoder=text_name
        )

        torch.manual_seed(t.seed)
        model = create_branch_model(args, class_text=class_text)
        future_train = torch.from_numpy(np.asarray(train.positions[:, frames:], np.float32))
        model.set_forecast_stats(future_train.mean(0), future_train.std(0))
        model.set_track_stats(torch.from_numpy(np.asarray(train.positions[:, :frames], np.float32)))
        set_conv_memory_format(model, t.channels_last)
        optimiser = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        scheduler = self._scheduler(optimiser)
        self.model = model

        start_epoch = 0
        resumed = self._resume(model, optimiser, scheduler, ds.manifest_sha256)
        if resumed is not None:
            start_epoch = resumed
        steps = math.ceil(len(train.labels) / t.batch_size)
        self._update(
            epoch=start_epoch, steps_per_epoch=steps, step=0, resumed_from_epoch=start_epoch, write=True
        )
        for epoch in range(start_epoch + 1, t.epochs + 1):
            self._train_epoch(model, optimiser, scheduler, train, val, epoch, steps)
            if epoch % t.checkpoint_every == 0 or epoch == t.epochs:
                self._save(model, optimiser, scheduler, epoch, ds.manifest_sha256)
            if self._on_epoch_end is not None:
                self._on_epoch_end(epoch)

        self._update(state="evaluating", write=True)
        results = self.evaluate(model, val, text_name)
        results["training_seconds"] = float(sum(h["duration_seconds"] for h in self._history))
        results["dataset_manifest_sha256"] = ds.manifest_sha256
        if cfg.publish:
            self._update(state="exporting", write=True)
            results.update(self._export_and_publish(model, val, results, ds.manifest_sha256))
        results["history"] = self.history
        results["fingerprint"] = self.fingerprint
        stamp = utc_stamp(compact=True)
        write_json_atomic(self.run_dir / f"results-{stamp}.json", results)
        write_json_atomic(self.run_dir / "results.json", results)
        if cfg.on_saved is not None:
            cfg.on_saved(self.run_dir / "results.json")
        with self._lock:
            self._results = results
        self._update(
            state="done", model_version=int(results.get("model_version", 0)), eta_seconds=0.0, write=True
        )
        log.info(
            "branch %s done: accuracy %.3f, forecast MAE %.2f %% of extent, model version %s",
            cfg.branch.name,
            results["accuracy"],
            results["forecast_mae_pct"],
            results.get("model_version", "-"),
        )
        return dict(results)

    def _progress_enabled(self) -> bool:
        return self.cfg.progress if self.cfg.progress is not None else sys.stderr.isatty()

    def _scheduler(self, optimiser: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        t = self.cfg.profile.training
        if t.scheduler == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=t.epochs, eta_min=t.lr * 0.01)
        if t.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(optimiser, step_size=max(1, t.epochs // 3), gamma=0.3)
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _e: 1.0)

    # ---- checkpoints ---------------------------------------------------------------
    def _save(self, model: BranchModel, optimiser: Any, scheduler: Any, epoch: int, manifest: str) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "fingerprint": self.fingerprint,
            "dataset_manifest_sha256": manifest,
            "model_args": model.args.to_dict(),
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": ckpt.rng_state(),
            "history": json.dumps(self.history),
        }
        keep = self.cfg.profile.training.keep_checkpoints
        path = ckpt.save_checkpoint(self.ckpt_dir, epoch, state, keep=keep)
        if self.cfg.on_saved is not None:
            self.cfg.on_saved(path)

    def _resume(self, model: BranchModel, optimiser: Any, scheduler: Any, manifest: str) -> int | None:
        ckpt.remove_stale_temp_files(self.ckpt_dir)

        def validate(state: dict[str, Any]) -> str | None:
            if state.get("fingerprint") != self.fingerprint:
                return "it belongs to a different branch/profile configuration"
            if state.get("dataset_manifest_sha256") != manifest:
                return "it was trained on a different dataset"
            # Same configuration but other code (an upgrade changed the layers): the
            # weights cannot be loaded, so this checkpoint is skipped, not fatal.
            theirs = state.get("model")
            if not isinstance(theirs, dict) or {k: tuple(v.shape) for k, v in theirs.items()} != own:
                return "it was written by a different model architecture (code changed)"
            return None

        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}

        state = ckpt.load_latest(self.ckpt_dir, validate=validate)
        if state is None:
            return None
        try:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise TrainingFailed(
                f"checkpoint of epoch {state['epoch']} in {self.ckpt_dir} passed validation but "
                f"does not load "
                f"({exc}); move it away to start over"
            ) from exc
        ckpt.set_rng_state(state["rng"])
        with self._lock:
            self._history = json.loads(state["history"])
            self._fill_status_from_history()
        log.info("branch %s: resumed from checkpoint of epoch %d", self.cfg.branch.name, state["epoch"])
        return int(state["epoch"])

    # ---- one epoch -----------------------------------------------------------------
    def _train_epoch(
        self, model: BranchModel, optimiser: Any, scheduler: Any, train: Any, val: Any, epoch: int, steps: int
    ) -> None:
        from tqdm import tqdm

        t = self.cfg.profile.training
        frames = self.cfg.profile.dataset.frames
        n = len(train.labels)
        # The data order and every random draw of epoch e depend on (seed, e) only.
        gen = torch.Generator().manual_seed(t.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).numpy()
        flips = (torch.rand(n, generator=gen) < 0.5).numpy() if t.augment_flip else np.zeros(n, bool)
        torch.manual_seed(t.seed * 100_003 + epoch)
        model.train()
        started = time.monotonic()
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
                clips = np.asarray(train.clips[idx])
                positions = np.array(train.positions[idx], np.float32)
                flip = flips[idx]
                if flip.any():
                    # Mirror image columns; in world units that is x -> -x (camera at the origin).
                    clips[flip] = clips[flip][:, :, :, ::-1]
                    positions[flip, :, 0] *= -1.0
                x = self._model_input(clips)
                y = torch.from_numpy(np.asarray(train.labels[idx], np.int64))
                target = self._normalised_target(model, positions[:, frames:])
                observed = torch.from_numpy(positions[:, :frames])
                out = model(x, observed if t.track_classifier_noise else None)
                loss, _parts = combined_loss(
                    out,
                    y,
                    target,
                    forecast_weight=t.forecast_weight,
                    aux_weight=t.aux_weight,
                    track=track_target(model, observed, out.track.shift if out.track is not None else None),
                    track_weight=t.track_weight,
                )
                if not torch.isfinite(loss):
                    raise TrainingFailed(
                        f"loss is {loss.item()} at epoch {epoch}, step {step + 1}: stopping; "
                        f"no model exported (try a lower lr than {t.lr})"
                    )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((out.logits.argmax(1) == y).sum())
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
            **metrics,
        }
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
                    seen = o.track.points if o.track.fitted is None else o.track.fitted
                    outs["track"].append(model.encoder.track.to_world(seen).numpy())
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

    # ---- evaluation and export ---------------------------------------------------------
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

    def _export_and_publish(
        self, model: BranchModel, val: Any, results: dict[str, Any], manifest: str
    ) -> dict[str, Any]:
        from services.trainer.export import OPSET, check_parity, export_onnx, output_specs
        from trajlab.modelbucket import publish_model

        cfg = self.cfg
        d = cfg.profile.dataset
        model.eval()
        set_conv_memory_format(model, False)  # export and parity from the plain layout
        clips = to_model_input(val.clips[: cfg.profile.training.parity_clips])
        export_dir = self.run_dir / "export"
        onnx_path = export_onnx(model, export_dir / "model.onnx", torch.from_numpy(clips[:2]))
        worst = check_parity(model, onnx_path, clips)
        metric_keys = (
            "accuracy",
            "mean_class_accuracy",
            "forecast_mae",
            "forecast_rmse",
            "forecast_mae_pct",
            "forecast_rmse_pct",
            "ade",
            "fde",
            "zero_shot_accuracy",
        )
        validation_metrics = {k: float(results[k]) for k in metric_keys}
        validation_metrics["onnx_parity_max_abs_diff"] = worst
        metadata = {
            "branch": cfg.branch.name,
            "branch_config": {
                **cfg.branch.model_dump(mode="json"),
                "model_args": model.args.to_dict(),
                "text_encoder": results.get("text_encoder", ""),
                "training": cfg.profile.training.model_dump(mode="json"),
            },
            "profile": cfg.profile.name,
            "input": {
                "name": "clip",
                "layout": "NCTHW",
                "frames": d.frames,
                "height": d.height,
                "width": d.width,
                "channels": 3,
                "dtype": "float32",
                "mean": list(DEFAULT_MEAN),
                "std": list(DEFAULT_STD),
            },
            "class_names": list(CLASS_NAMES),
            "outputs": output_specs(model),
            "forecast_horizon": d.horizon,
            "fps": d.fps,
            "embedding_dim": model.embedding_dim,
            "opset": OPSET,
            "framework": f"pytorch {torch.__version__} -> onnx (torch.onnx dynamo exporter)",
            "validation_metrics": validation_metrics,
            "dataset_manifest_sha256": manifest,
        }
        version, vdir = publish_model(
            cfg.model_repo, cfg.branch.name, onnx_path, metadata, staging=self.run_dir / "published"
        )
        log.info("branch %s: published model version %d at %s", cfg.branch.name, version, vdir)
        return {
            "model_version": version,
            "model_dir": str(vdir),
            "model_size_bytes": int((vdir / "model.onnx").stat().st_size),
            "onnx_parity_max_abs_diff": worst,
        }

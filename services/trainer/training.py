"""A run of one branch, orchestrated: model, checkpoints and resume, status, results.

One :class:`Trainer` runs one branch on one profile. It is used by the gRPC service
(in a background thread) and by ``trajlab train`` (in the foreground): same code. Its
parts are mixins in their own modules: the step loop (``step_loop.py``), scoring on the
validation split (``scoring.py``) and publishing the ONNX model (``publishing.py``).

Crash safety: checkpoints are written atomically every ``checkpoint_every`` epochs
(and after the last). A new Trainer on the same run directory resumes from the
newest good checkpoint whose fingerprint (branch, profile, model arguments, text
encoder) and dataset hash match. The data order of epoch ``e`` is a permutation
drawn from a generator seeded with ``seed + e``, and the torch RNG is reseeded the
same way at every epoch start (and with ``training.fresh_clips_per_epoch`` the epoch's clips
are rendered from (dataset, seed, epoch), ``fresh_clips.py``), so a resumed run reaches
bit-identical weights on CPU.
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
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.trainer import checkpoint as ckpt
from services.trainer.branch import (
    BranchModel,
    create_branch_model,
    encoder_args_for,
    load_encoder_weights,
    set_conv_memory_format,
)
from services.trainer.cost import flops_per_clip, training_cost
from services.trainer.fresh_clips import training_data
from services.trainer.model_args import MODEL_FORMAT, ModelArgs
from services.trainer.publishing import Publishing
from services.trainer.run_io import TrainingFailed, TrainingStopped, utc_stamp, write_json_atomic
from services.trainer.scoring import Scoring
from services.trainer.step_loop import StepLoop
from services.trainer.zoo import require_servable_encoder
from trajlab.data.camera import Camera
from trajlab.profiles import BranchConfig, Profile

log = logging.getLogger(__name__)

STATES = ("idle", "training", "evaluating", "exporting", "done", "failed")
# The model's format (services.trainer.model_args.MODEL_FORMAT): bumped whenever the weights'
# layout or ModelArgs change meaning. Checkpoints of another format are not resumed.
CHECKPOINT_FORMAT = MODEL_FORMAT


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
    """The profile's ``model:`` section key for key, the branch's parts and the dataset's geometry."""
    d, m, b = cfg.profile.dataset, cfg.profile.model, cfg.branch
    return ModelArgs(
        encoder=str(b.encoder),
        enhancement=str(b.enhancement),
        frames=d.frames,
        height=d.height,
        width=d.width,
        horizon=d.horizon,
        focal_px=Camera(d.width, d.height, d.fov_degrees).focal_px,
        object_radius=d.sphere_radius,
        text_dim=text_dim,
        text_encoder=text_encoder,
        **{
            **m.model_dump(),
            "encoder_args": encoder_args_for(str(b.encoder), m.encoder_args, b.encoder_args),
            # A branch may switch the track perception on or off; unset, the profile's.
            "track": m.track if b.track is None else b.track,
        },
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


class Trainer(StepLoop, Scoring, Publishing):
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
            if self.cfg.on_saved is not None:  # a bucket run dir: uploaded, rate-limited (rundir)
                self.cfg.on_saved(self.run_dir / "status.json")
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
        ds = self._load_data()
        train, val = ds.train, ds.val
        model, text_name = self._build_model(train)
        optimiser = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        scheduler = self._scheduler(optimiser)
        self.model = model

        start_epoch = 0
        resumed = self._resume(model, optimiser, scheduler, ds.manifest_sha256)
        if resumed is not None:
            start_epoch = resumed
        steps = math.ceil((t.fresh_clips_per_epoch or len(train.labels)) / t.batch_size)
        self._update(
            epoch=start_epoch, steps_per_epoch=steps, step=0, resumed_from_epoch=start_epoch, write=True
        )
        for epoch in range(start_epoch + 1, t.epochs + 1):
            self._train_epoch(model, optimiser, scheduler, train, val, epoch, steps)
            if epoch % t.checkpoint_every == 0 or epoch == t.epochs:
                self._save(model, optimiser, scheduler, epoch, ds.manifest_sha256)
            if self._on_epoch_end is not None:
                self._on_epoch_end(epoch)
        return self._finish(model, ds, text_name)

    def _load_data(self) -> Any:
        """The profile's dataset, fetched or built, verified once (``trajlab.data.Dataset``)."""
        from trajlab.data import load_dataset
        from trajlab.store.datasets import prepare_dataset

        cfg, t = self.cfg, self.cfg.profile.training
        t0 = time.monotonic()
        ds_path = prepare_dataset(
            cfg.profile.dataset, cfg.data_dir, cfg.data_source, progress=self._progress_enabled()
        )
        # build_dataset has just verified (or written) every file; skip a second sha256 pass.
        ds = load_dataset(ds_path, expected_config=cfg.profile.dataset, verify=False)
        log.info(
            "branch %s: dataset %s (%d train / %d val clips) loaded in %.1f s",
            cfg.branch.name,
            ds_path,
            len(ds.train.labels),
            len(ds.val.labels),
            time.monotonic() - t0,
        )
        if t.fresh_clips_per_epoch > 0:
            log.info(
                "branch %s: training on %d fresh clips per epoch (the stored train split only sets "
                "the normalisation statistics)",
                cfg.branch.name,
                t.fresh_clips_per_epoch,
            )
        return ds

    def _build_model(self, train: Any) -> tuple[BranchModel, str]:
        """The branch's model, seeded, its weights file loaded and its target statistics set
        from the stored train split; also the class-text encoder's name (text alignment)."""
        cfg, t = self.cfg, self.cfg.profile.training
        frames = cfg.profile.dataset.frames
        class_text, text_name = None, ""
        if str(cfg.branch.enhancement) == "text_alignment":
            from services.trainer.text import class_text_embeddings

            emb, text_name = class_text_embeddings(cfg.text_encoder, cfg.text_cache_dir)
            class_text = torch.from_numpy(emb)
        args = model_args_for(
            cfg, text_dim=0 if class_text is None else class_text.shape[1], text_encoder=text_name
        )

        require_servable_encoder(args)
        torch.manual_seed(t.seed)
        model = create_branch_model(args, class_text=class_text)
        if cfg.branch.weights is not None:
            load_encoder_weights(model, cfg.branch.weights)
        future_train = torch.from_numpy(np.asarray(train.positions[:, frames:], np.float32))
        model.set_forecast_stats(future_train.mean(0), future_train.std(0))
        model.set_track_stats(torch.from_numpy(np.asarray(train.positions[:, :frames], np.float32)))
        set_conv_memory_format(model, t.channels_last)
        return model, text_name

    def _finish(self, model: BranchModel, ds: Any, text_name: str) -> dict[str, Any]:
        """Evaluate, count the cost, export and publish, write results.json; the results."""
        cfg, t = self.cfg, self.cfg.profile.training
        val = ds.val
        self._update(state="evaluating", write=True)
        results = self.evaluate(model, val, text_name)
        results.update(training_cost(self._history))  # wall and CPU time of the training
        results["training_data"] = training_data(cfg.profile.dataset, t, len(ds.train.labels))
        try:
            results["flops_per_clip"] = flops_per_clip(model, self._model_input(val.clips[:1]))
        except (TypeError, RuntimeError, NotImplementedError) as exc:
            # torch's counter cannot trace every op (the sphere fit's while_loop): a measurement
            # missing is "not measured" in the report, never a failed training.
            why = f"FLOPs per clip not counted: {type(exc).__name__}: {exc}"
            log.warning("branch %s: %s", cfg.branch.name, why)
            results.setdefault("warnings", []).append(why)
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
            if state.get("format") != CHECKPOINT_FORMAT:
                return (f"it was written by an older trainer (format {state.get('format')}, this one "
                        f"reads {CHECKPOINT_FORMAT}): retrain the branch")
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

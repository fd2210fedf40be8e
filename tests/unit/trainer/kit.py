"""Shared helpers of the trainer tests: a tiny profile and dataset, run configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from services.trainer.training import RunConfig
from trajlab.profiles import DatasetConfig, ModelConfig, Profile, TrainingConfig, load_branches

# 32 clips of 8x24x24: every model runs, trains a few epochs and exports in seconds.
TINY_DATASET = DatasetConfig(
    samples=32,
    val_fraction=0.25,
    seed=3,
    frames=8,
    horizon=4,
    height=24,
    width=24,
    fps=8.0,
    clutter=0,
    transients=0,
    background_noise=4.0,
)
TINY_TRAINING = TrainingConfig(
    epochs=3,
    batch_size=8,
    lr=1e-3,
    scheduler="cosine",
    checkpoint_every=1,
    keep_checkpoints=5,
    status_interval_seconds=0.2,
    threads=1,
    parity_clips=8,
)
TINY_MODEL = ModelConfig(encoder_args={"channels": [4, 8, 8]})


def tiny_profile(model: dict[str, Any] | None = None, **training: Any) -> Profile:
    return Profile(
        name="tiny",
        dataset=TINY_DATASET,
        training=TINY_TRAINING.model_copy(update=training),
        model=TINY_MODEL.model_copy(update=model or {}),
    )


def write_profile_yaml(path: Path, profile: Profile) -> Path:
    path.write_text(yaml.safe_dump(profile.model_dump(mode="json")))
    return path


def run_config(
    tmp: Path,
    data_dir: Path,
    branch: str = "b1",
    *,
    publish: bool = False,
    run: str = "run",
    model: dict[str, Any] | None = None,
    **training: Any,
) -> RunConfig:
    return RunConfig(
        branch=load_branches()[branch],
        profile=tiny_profile(model, **training),
        data_dir=data_dir,
        run_dir=tmp / run,
        model_repo=tmp / "models",
        text_cache_dir=tmp / "text-cache",
        progress=False,
        publish=publish,
    )

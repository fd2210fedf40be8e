"""Trainer settings: env ``TRAJLAB_TRAINER_*``, YAML via ``TRAJLAB_CONFIG``, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import SettingsConfigDict

from trajlab.config import ServerSettings
from trajlab.store import Location, StoreUrl


class TrainerSettings(ServerSettings):
    """Everything a trainer process reads at start (one process per branch). Units in comments."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJLAB_TRAINER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    port: int = 50052  # gRPC port; 0 picks a free one (tests)
    branch: str = "b1"  # which branch of the branches file this process trains
    branches_file: Path | None = None  # None = trajlab/configs/branches.yaml (the four seed branches)
    profile: str = "quick"  # profile name ("quick", "seed") or a YAML path
    auto_start: bool = False  # start training as soon as the server is up (compose sets true)
    # Each of these three is a local path or s3://bucket/prefix (trajlab.store; credentials and
    # endpoint from the environment). A bucket run_dir/data_dir is worked on in a local copy
    # under cache_dir.
    data_dir: Location | None = None  # dataset cache; None = ./data/<profile>
    model_repo: Location = Path("./models")  # published ONNX models: <repo>/<branch>/<version>/
    run_dir: Location | None = None  # checkpoints, status, history, results; None = ./runs/<branch>
    cache_dir: Path = Path("./cache/store")  # local copies of s3:// run and data locations
    threads: int | None = Field(None, ge=0, le=256)  # torch threads; None = the profile's setting
    status_interval_seconds: float | None = Field(None, gt=0.0)  # None = the profile's cadence
    # Text encoder of the text-alignment branch: "auto" (open_clip when its weights are on
    # disk, else all-MiniLM-L6-v2), "minilm", or "open_clip:<architecture>:<weights file>".
    text_encoder: str = "auto"
    text_cache_dir: Path = Path("./cache/text")  # cached class-description embeddings
    # Training seed of this run (weight init and data order), replacing the profile's training.seed;
    # the run is then named <branch>@s<seed> (trajlab.runs) and trained in
    # <run_dir>/<branch>/seed-<seed> (run_matrix.resolve_run). None = the profile's seed, named
    # <branch>, trained in run_dir itself. A run matrix sets it per index.
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    # Seeds this process trains as a seed group (compose's TRAJLAB_SEEDS; services/trainer/seed_group.py):
    # N child trainers, one per training seed of the profile (training.seed, +1, ...), seed k's run
    # on port + k; metrics_port serves every seed's metrics (seed_metrics.py). 0 = this process trains one run
    # itself (as `seed` says).
    seeds: int = Field(0, ge=0, le=16)
    # "perception": train this branch with the object-track perception off (its track false),
    # as the run <branch>-noperc (trajlab.runs); "" = as configured.
    ablate: Literal["", "perception"] = ""
    watch_interval_seconds: float = Field(1.0, gt=0.0, le=3600.0)  # WatchStatus default cadence, s
    # Run matrix (Kubernetes Indexed Job, see services/trainer/run_matrix.py): the file of
    # branches x seeds, and this pod's index in it (JOB_COMPLETION_INDEX, set by Kubernetes).
    run_matrix_file: Path | None = None
    run_index: int | None = Field(
        None,
        ge=0,
        validation_alias=AliasChoices("run_index", "TRAJLAB_TRAINER_RUN_INDEX", "JOB_COMPLETION_INDEX"),
    )
    exit_when_done: bool = False  # exit once the run is done (0) or failed (3): a Job's pod

    @field_validator("branch")
    @classmethod
    def _branch_name(cls, v: str) -> str:
        if not v or "/" in v or v.startswith("."):
            raise ValueError(f"not a branch name: {v!r}")
        return v

    def resolved_run_dir(self) -> Path | StoreUrl:
        return self.run_dir if self.run_dir is not None else Path("./runs") / self.branch

    def resolved_data_dir(self, profile_name: str) -> Path | StoreUrl:
        return self.data_dir if self.data_dir is not None else Path("./data") / profile_name

"""Settings of the reporter service (env prefix ``TRAJLAB_REPORTER_``, YAML via ``TRAJLAB_CONFIG``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from trajlab.config import ServerSettings
from trajlab.runs import split_run_name
from trajlab.store import Location, StoreUrl

WINNER_RULES = ("accuracy_then_mae", "mae_then_accuracy", "served_accuracy_then_mae")


def parse_targets(spec: str) -> dict[str, str]:
    """Parse ``"b1=host:port,b2=host:port"`` into ``{"b1": "host:port", ...}`` (order kept).

    Raises ValueError naming the bad entry, so a typo stops the service at start.
    """
    out: dict[str, str] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, target = item.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not name or not target or ":" not in target:
            raise ValueError(f"expected 'branch=host:port', got {item!r}")
        if name in out:
            raise ValueError(f"branch {name!r} given twice")
        out[name] = target
    return out


def parse_run_names(spec: str) -> list[str]:
    """Parse ``"b1@s0,b2@s1"`` into run names (order kept); ValueError naming a bad or repeated one."""
    out: list[str] = []
    for raw in spec.split(","):
        name = raw.strip()
        if not name:
            continue
        base, seed = split_run_name(name)
        if seed is None or not base or "/" in base or "=" in base:
            raise ValueError(f"expected run names 'branch@s<seed>' (e.g. b1@s0), got {name!r}")
        if name in out:
            raise ValueError(f"run {name!r} given twice")
        out.append(name)
    return out


class ReporterSettings(ServerSettings):
    """Where the reporter finds its sources and what report it writes."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJLAB_REPORTER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    port: int = 50054  # gRPC port of ReporterService; 0 picks a free one
    # Trainers to report on, "b1=host:port,b2=host:port"; the order is the report's branch order.
    trainers: str = ""
    # Seeds each trainer above trains as a seed group (compose's TRAJLAB_SEEDS; 0 = one run each):
    # "b1=host:port" then stands for the runs b1@s<seed> of the profile's training seeds, seed k's
    # trainer at port + k (trajlab.runs.seed_group_targets).
    trainer_seeds: int = Field(0, ge=0, le=16)
    # Finished runs' stored results, read without a trainer: a run-dir base (a path or
    # s3://bucket/prefix) holding <branch>/seed-<seed>/ run directories (sources/stored_runs.py).
    # Alone or beside `trainers` (a run given both ways is asked of its live trainer).
    runs_dir: Location | None = None
    # The runs to report from runs_dir, "b1@s0,b2@s0,..." (the report's order); "" = the run matrix
    # file's branches x seeds when one is given, else every run found under runs_dir.
    runs: str = ""
    run_matrix_file: Path | None = None  # the trainers' matrix (trajlab.run_matrix), as the Job mounts it
    # Encoder gRPC target for the served-model evaluation; "" skips it (shown as missing).
    encoder_target: str = "127.0.0.1:50051"
    # Describer gRPC target for the sample equations; "" skips it (shown as missing).
    describer_target: str = "127.0.0.1:50053"
    # Prometheus base URL, e.g. "http://127.0.0.1:9090"; "" = no Prometheus (curves from GetHistory).
    prometheus_url: str = ""
    # reports_dir and data_dir: a local path or s3://bucket/prefix (trajlab.store; a report in a
    # bucket is rendered under cache_dir, then published as a unit).
    reports_dir: Location = Path("reports")  # each report goes to <reports_dir>/<UTC stamp>/
    profile: str = "quick"  # profile of the validation clips when data_dir is not given
    data_dir: Location | None = None  # dataset cache holding the validation split; None = ./data/<profile>
    cache_dir: Path = Path("./cache/store")  # local copies of s3:// locations
    describe_samples: int = 3  # sample trajectories per branch sent to the describer (0 = none)
    winner_rule: str = "accuracy_then_mae"  # one of WINNER_RULES
    # Split the served models are scored on: "test" (held out: never trained, early-stopped or
    # tuned on; the report's headline) or "val" (what the trainers already scored).
    eval_split: Literal["test", "val"] = "test"
    eval_max_clips: int = 0  # validation clips sent through the encoder per branch; 0 = all
    rpc_timeout_seconds: float = 10.0  # deadline of each gRPC call to a source, seconds
    prometheus_timeout_seconds: float = 5.0  # HTTP timeout of each Prometheus query, seconds
    # After the served-model evaluation, wait up to this long (seconds) for Prometheus to scrape the
    # encoder's counters so the latency figures include the evaluation's calls; 0 = do not wait.
    prometheus_settle_seconds: float = 20.0
    # Encoder latency histogram (seconds, labelled by branch) read for p50/p99.
    encoder_latency_metric: str = "trajlab_encoder_inference_seconds"
    # Compose trigger: build one report as soon as every trainer is DONE (or FAILED), then keep serving.
    build_when_done: bool = False
    build_when_done_poll_seconds: float = 10.0  # how often the trigger polls GetStatus, seconds
    # With build_when_done: wait up to this long (seconds) for the encoder to serve each DONE branch.
    encoder_wait_seconds: float = 120.0

    @field_validator("trainers")
    @classmethod
    def _check_trainers(cls, v: str) -> str:
        parse_targets(v)
        return v

    @field_validator("winner_rule")
    @classmethod
    def _check_rule(cls, v: str) -> str:
        if v not in WINNER_RULES:
            raise ValueError(f"unknown winner rule {v!r}; known: {', '.join(WINNER_RULES)}")
        return v

    # Stress sets the served models are also scored on (trajlab.data.stress): "" = none (no
    # robustness section), "all", or names such as "clutter,noise"; built beside the data_dir.
    stress_sets: str = ""
    stress_samples: int = 160  # clips per stress set (at most the test split's)
    # Where the stress sets are built and cached; None = beside the data_dir (<data_dir>-stress/).
    # Compose mounts the dataset read-only and points this at the container's /tmp.
    stress_dir: Path | None = None

    @field_validator("stress_sets")
    @classmethod
    def _check_stress_sets(cls, v: str) -> str:
        from trajlab.data.stress import parse_sets

        if v.strip():
            parse_sets(v, what="TRAJLAB_REPORTER_STRESS_SETS")  # a ValueError naming the unknown set
        return v.strip()

    # Significance level of the statistics' paired tests (Holm-corrected over pairs), and the power
    # at which the report states the accuracy difference the test split can resolve.
    stats_alpha: float = 0.05
    stats_power: float = 0.8

    @field_validator("stats_alpha", "stats_power")
    @classmethod
    def _open_unit(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"must be between 0 and 1 (exclusive), got {v}")
        return v

    @field_validator("stress_samples")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("describe_samples", "eval_max_clips")
    @classmethod
    def _non_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("runs")
    @classmethod
    def _check_runs(cls, v: str) -> str:
        parse_run_names(v)
        return v

    def run_names(self) -> list[str]:
        """The stored runs asked for, in order ([] = discover them under runs_dir).

        Raises ConfigError naming the matrix file when it cannot be read."""
        if self.runs or self.run_matrix_file is None:
            return parse_run_names(self.runs)
        from trajlab.run_matrix import load_run_matrix

        return load_run_matrix(self.run_matrix_file).run_names()

    def trainer_targets(self) -> dict[str, str]:
        """The trainers as ``{branch: target}``; with ``trainer_seeds``, ``{run: target}`` of every seed."""
        targets = parse_targets(self.trainers)
        if not self.trainer_seeds:
            return targets
        from trajlab.profiles import load_profile
        from trajlab.runs import expand_seed_groups, training_seeds

        seeds = training_seeds(load_profile(self.profile).training.seed, self.trainer_seeds)
        return expand_seed_groups(targets, seeds)

    def validation_dir(self) -> Path | StoreUrl:
        """Where the dataset holding the validation clips is."""
        return self.data_dir if self.data_dir is not None else Path("data") / self.profile

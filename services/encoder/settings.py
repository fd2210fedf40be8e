"""Encoder settings: env ``TRAJLAB_ENCODER_*``, YAML via ``TRAJLAB_CONFIG``, validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from trajlab.config import ServerSettings
from trajlab.store import Location


class EncoderSettings(ServerSettings):
    """Everything the encoder server reads at start. Units in comments."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJLAB_ENCODER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    port: int = 50051  # gRPC port; 0 picks a free one (tests)
    # <repo>/<branch>/<version>/{model.onnx, metadata.json}: a directory, or s3://bucket/prefix
    # (credentials and endpoint from the environment, see trajlab.store.s3)
    model_repo: Location = Path("./models")
    model_cache_dir: Path = Path("./cache/models")  # local copy of a bucket repository's versions
    poll_seconds: float = Field(2.0, gt=0.0, le=3600.0)  # seconds between repository scans
    keep_versions: int = Field(2, ge=1, le=64)  # newest loadable versions kept loaded per branch
    # Execution providers in order of preference. CUDA is used only when requested here
    # AND present in this onnxruntime build; otherwise the server falls back to CPU and
    # says so in its log and in ListModels.
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    # onnxruntime intra-op threads per session; 0 = the number of CPUs this process may
    # use (set explicitly on the session either way, never left to onnxruntime).
    intra_op_threads: int = Field(0, ge=0, le=256)
    # Sessions run concurrently at most this many at once (off and adaptive batching; an
    # adaptive run may carry a batch). 1 avoids oversubscribing the intra-op pools on a
    # small CPU; raise it on a GPU. The hybrid layout raises it to intra_op_threads on CPU.
    inference_concurrency: int = Field(1, ge=1, le=256)
    # Batching of requests for the same model version into one run of at most max_batch_size clips:
    # - off (default): every request runs alone ("false" = off); with the hybrid layout, requests
    #   that arrive together run side by side, one core each;
    # - adaptive: a request runs at once when the version is idle; requests that queue while it
    #   runs go together into its next run (no timer, no extra thread);
    # - window: a batcher thread gathers requests for up to max_queue_delay_ms ("true" = window).
    # Why off (with the hybrid layout) is the default on CPU: docs/SERVING.md and bench/RESULTS.md.
    batching: Literal["off", "adaptive", "window"] = "off"
    max_batch_size: int = Field(8, ge=1, le=1024)  # clips per batch
    max_queue_delay_ms: float = Field(2.0, ge=0.0, le=10_000.0)  # milliseconds a request may wait (window)
    max_queue_size: int = Field(256, ge=1)  # queued requests per model; beyond: RESOURCE_EXHAUSTED
    warmup_runs: int = Field(2, ge=0, le=100)  # inference runs on zeros before a version serves
    # How runs share the cores (services.encoder.layout):
    # - hybrid (default): a run alone uses intra_op_threads threads; up to intra_op_threads runs at
    #   once, a run that starts beside another uses a second, one-thread session of the version
    #   (CPU only; twice a version's memory when intra_op_threads > 1);
    # - wide: every run uses intra_op_threads threads, inference_concurrency runs at once.
    intra_op_layout: Literal["wide", "hybrid"] = "hybrid"

    @field_validator("batching", mode="before")
    @classmethod
    def _batching_from_bool(cls, v: Any) -> Any:
        # Booleans as before adaptive batching existed: on = the time window, off = off.
        if isinstance(v, bool):
            return "window" if v else "off"
        if isinstance(v, str) and v.strip().lower() in {"true", "false", "on", "1", "0"}:
            return "window" if v.strip().lower() in {"true", "on", "1"} else "off"
        return v

    @model_validator(mode="after")
    def _check_providers(self) -> EncoderSettings:
        if not self.providers:
            raise ValueError("providers must name at least one execution provider")
        for p in self.providers:
            if not p.endswith("ExecutionProvider"):
                raise ValueError(
                    f"providers: {p!r} is not an onnxruntime provider name (e.g. CPUExecutionProvider)"
                )
        return self

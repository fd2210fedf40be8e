"""Prometheus metrics of the encoder (default registry, ``trajlab_encoder_*``).

The reporter reads per-branch p50/p99 latency from ``trajlab_encoder_inference_seconds``
(model time seen by one request: queueing for a batch + the onnxruntime run) and
``trajlab_encoder_request_seconds`` (the whole handler: decode, preprocess, infer).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Sub-millisecond to seconds: a 16x64x64 clip takes a few ms on a CPU.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

REQUESTS = Counter(
    "trajlab_encoder_requests_total",
    "Encoder RPCs answered, by method, branch and gRPC status code.",
    ["method", "branch", "code"],
)
REQUEST_SECONDS = Histogram(
    "trajlab_encoder_request_seconds",
    "Encoder RPC handler latency in seconds, by method and branch.",
    ["method", "branch"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "trajlab_encoder_inference_seconds",
    "Per-request model latency in seconds (batch queueing + onnxruntime run), by branch.",
    ["branch"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "trajlab_encoder_batch_size",
    "Clips per onnxruntime run, by branch.",
    ["branch"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128),
)
MODELS_LOADED = Gauge(
    "trajlab_encoder_models_loaded",
    "Model versions loaded and serving, by branch.",
    ["branch"],
)
DEFAULT_VERSION = Gauge(
    "trajlab_encoder_default_version",
    "Version served when a request gives version 0, by branch.",
    ["branch"],
)
MODEL_LOADS = Counter(
    "trajlab_encoder_model_loads_total",
    "Model versions loaded successfully, by branch.",
    ["branch"],
)
LOAD_FAILURES = Counter(
    "trajlab_encoder_load_failures_total",
    "Model versions refused at load, by branch and reason (corrupt, checksum, metadata, incompatible).",
    ["branch", "reason"],
)
MODEL_UNLOADS = Counter(
    "trajlab_encoder_model_unloads_total",
    "Model versions unloaded (removed from disk or older than the newest K), by branch.",
    ["branch"],
)
REPOSITORY_SKIPPED = Counter(
    "trajlab_encoder_repository_skipped_total",
    "Entries of a branch directory skipped at scan time as not a version, by branch and reason "
    "(not_a_number, out_of_range, not_a_directory, symlink, scan_error); counted once per entry.",
    ["branch", "reason"],
)

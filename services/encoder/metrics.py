"""Prometheus metrics of the encoder (default registry, ``trajlab_encoder_*``).

The reporter reads per-branch p50/p99 latency from ``trajlab_encoder_inference_seconds``
(model time seen by one request: queueing for a batch + the onnxruntime run) and
``trajlab_encoder_request_seconds`` (the whole handler: decode, preprocess, infer).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Sub-millisecond to seconds. A 16x64x64 clip takes 5-50 ms on a CPU, where the buckets step
# by at most 12.5 %: histogram_quantile interpolates inside a bucket, so a p50 is only as fine
# as the bucket it falls in (with 20-30 ms as one bucket, any branch whose requests all took
# 20-30 ms read exactly 25.0 ms, and the report's cost table could not tell branches apart).
LATENCY_BUCKETS = tuple(
    ms / 1000.0
    for ms in (
        0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5,
        5, 5.5, 6, 6.5, 7, 7.5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18,
        20, 22.5, 25, 27.5, 30, 32.5, 35, 37.5, 40, 45, 50,
        60, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000,
    )
)  # fmt: skip

REQUESTS = Counter(
    "trajlab_encoder_requests_total",
    "Encoder RPCs answered, by method, branch and gRPC status code.",
    ["method", "branch", "code"],
)
REQUEST_SECONDS = Histogram(
    "trajlab_encoder_request_seconds",
    "Encoder RPC handler latency in seconds, by method and branch.",
    ["method", "branch"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "trajlab_encoder_inference_seconds",
    "Per-request model latency in seconds (batch queueing + onnxruntime run), by branch.",
    ["branch"],
    buckets=LATENCY_BUCKETS,
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

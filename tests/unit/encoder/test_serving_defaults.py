"""What `make run` and compose serve with: the encoder's own defaults, not overrides."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from services.encoder.settings import EncoderSettings
from trajlab.config import load_settings

ROOT = Path(__file__).resolve().parents[3]
# Settings that decide serving speed; their defaults are what bench/bench_encoder.py measures.
SERVING_KNOBS = (
    "BATCHING",
    "INTRA_OP_THREADS",
    "INTRA_OP_LAYOUT",
    "INFERENCE_CONCURRENCY",
    "MAX_BATCH_SIZE",
    "MAX_WORKERS",
)


def test_the_default_is_the_hybrid_layout_without_batching_on_all_cpus(monkeypatch) -> None:
    for k in [k for k in os.environ if k.startswith("TRAJLAB_ENCODER_") or k == "TRAJLAB_CONFIG"]:
        monkeypatch.delenv(k)
    s = load_settings(EncoderSettings)
    assert (s.batching, s.intra_op_layout, s.inference_concurrency, s.intra_op_threads) == (
        "off",
        "hybrid",
        1,
        0,
    )


def test_cpu_compose_and_make_run_leave_the_serving_knobs_at_their_defaults() -> None:
    env = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["encoder"]["environment"]
    overridden = [k for k in env if k.removeprefix("TRAJLAB_ENCODER_") in SERVING_KNOBS]
    assert overridden == [], f"compose.yaml overrides {overridden}: the benchmarked defaults would not apply"
    runner = (ROOT / "trajlab_cli" / "runner.py").read_text()
    assert not [k for k in SERVING_KNOBS if f'"{k}"' in runner or f"ENCODER_{k}" in runner]


def test_the_hybrid_layout_is_for_cpu_sessions_a_gpus_concurrency_is_kept(monkeypatch) -> None:
    from services.encoder.server import hybrid_layout, runs_at_once

    for k in [k for k in os.environ if k.startswith("TRAJLAB_ENCODER_") or k == "TRAJLAB_CONFIG"]:
        monkeypatch.delenv(k)
    cpu = load_settings(EncoderSettings, intra_op_threads=2)
    assert hybrid_layout(cpu) and runs_at_once(cpu) == 2
    gpu = load_settings(EncoderSettings, intra_op_threads=2, inference_concurrency=3,
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert not hybrid_layout(gpu) and runs_at_once(gpu) == 3
    wide = load_settings(EncoderSettings, intra_op_threads=2, intra_op_layout="wide")
    assert not hybrid_layout(wide) and runs_at_once(wide) == 1

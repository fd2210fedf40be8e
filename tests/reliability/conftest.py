"""Fixtures for the reliability tests: tiny ONNX models (exported once) and encoder processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contract.encoder import kit
from tests.reliability.procs import ServiceProcess


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models with different weights, and one with a fixed batch axis (incompatible)."""
    d = tmp_path_factory.mktemp("reliability-onnx")
    return {
        "a": kit.export_tiny_model(d / "a.onnx", seed=0),
        "b": kit.export_tiny_model(d / "b.onnx", seed=1),
        "fixed": kit.export_tiny_model(d / "fixed.onnx", seed=2, batch_axis=False),
    }


EncoderFactory = Callable[..., ServiceProcess]


@pytest.fixture
def encoder_process(tmp_path: Path) -> Iterator[EncoderFactory]:
    """encoder_process(repo, **env) -> ``python -m services.encoder`` on a free port, stopped after."""
    started: list[ServiceProcess] = []

    def start(repo: Path, **env: str) -> ServiceProcess:
        values = {
            "TRAJLAB_ENCODER_PORT": "0",
            "TRAJLAB_ENCODER_METRICS_PORT": "-1",
            "TRAJLAB_ENCODER_MODEL_REPO": str(repo),
            "TRAJLAB_ENCODER_POLL_SECONDS": "0.1",
            "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1",
            "TRAJLAB_ENCODER_WARMUP_RUNS": "1",
        }
        values.update({f"TRAJLAB_ENCODER_{k.upper()}": str(v) for k, v in env.items()})
        proc = ServiceProcess("services.encoder", values)
        started.append(proc)
        return proc

    yield start
    for p in started:
        p.kill()

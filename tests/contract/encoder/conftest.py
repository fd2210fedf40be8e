"""Fixtures: tiny ONNX models exported once per session, and encoder servers on port 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from tests.contract.encoder import kit
from trajlab.config import load_settings


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny models with different weights ("a", "b") and one with a fixed batch axis."""
    d = tmp_path_factory.mktemp("onnx")
    return {
        "a": kit.export_tiny_model(d / "a.onnx", seed=0),
        "b": kit.export_tiny_model(d / "b.onnx", seed=1),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


ServerFactory = Callable[..., EncoderServer]


@pytest.fixture
def start_server(repo: Path) -> Iterator[ServerFactory]:
    """start_server(**settings) -> a started EncoderServer on 127.0.0.1:<free port>, stopped after the test."""
    started: list[EncoderServer] = []

    def _start(**overrides: Any) -> EncoderServer:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": -1,
            "model_repo": repo,
            "poll_seconds": 0.1,
            "intra_op_threads": 1,
            "warmup_runs": 1,
        }
        values.update(overrides)
        srv = EncoderServer(load_settings(EncoderSettings, **values))
        srv.start()
        started.append(srv)
        return srv

    yield _start
    for srv in started:
        srv.stop(0)

"""Fixtures: trainer servers on 127.0.0.1:<free port> over a tiny profile, and their clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.trainer.server import TrainerServer
from services.trainer.settings import TrainerSettings
from tests.unit.trainer import kit
from trajlab.clients.trainer import TrainerClient
from trajlab.config import load_settings
from trajlab.data import build_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(kit.TINY_DATASET, tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture
def profile_yaml(tmp_path: Path) -> Path:
    return kit.write_profile_yaml(tmp_path / "tiny.yaml", kit.tiny_profile(epochs=2))


ServerFactory = Callable[..., tuple[TrainerServer, TrainerClient]]


@pytest.fixture
def start_trainer(tmp_path: Path, tiny_data: Path, profile_yaml: Path) -> Iterator[ServerFactory]:
    """start_trainer(**settings) -> (started server, client); both closed after the test."""
    started: list[tuple[TrainerServer, TrainerClient]] = []

    def _start(**overrides: Any) -> tuple[TrainerServer, TrainerClient]:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": -1,
            "branch": "b4",
            "profile": str(profile_yaml),
            "data_dir": tiny_data,
            "run_dir": tmp_path / "run",
            "model_repo": tmp_path / "models",
            "text_cache_dir": tmp_path / "text-cache",
            "watch_interval_seconds": 0.05,
            "grace_seconds": 1.0,
        }
        values.update(overrides)
        server = TrainerServer(load_settings(TrainerSettings, yaml_path=None, **values))
        port = server.start()
        client = TrainerClient(f"127.0.0.1:{port}", timeout=30)
        client.wait_until_serving(timeout=30)
        started.append((server, client))
        return server, client

    yield _start
    for server, client in started:
        client.close()
        server.stop(grace_seconds=1.0)

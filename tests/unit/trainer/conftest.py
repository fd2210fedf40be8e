"""Fixtures of the trainer unit tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.unit.trainer import kit
from trajlab.data import build_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny dataset, built once per session."""
    return build_dataset(kit.TINY_DATASET, tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture
def fake_text_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Class-description embeddings without loading MiniLM (its own test loads it for real)."""

    def embed(texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(0)
        e = rng.normal(size=(len(texts), 32)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    monkeypatch.setattr("services.trainer.text._embed_minilm", embed)

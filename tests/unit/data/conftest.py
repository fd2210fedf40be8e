"""Small dataset configs and a session-built dataset, so the data tests stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest

from trajlab.data import build_dataset
from trajlab.profiles import DatasetConfig


def small_config(**overrides: object) -> DatasetConfig:
    """40 clips of 8 x 24 x 24: every feature on, builds in well under a second."""
    base: dict[str, object] = {
        "samples": 40,
        "frames": 8,
        "horizon": 4,
        "height": 24,
        "width": 24,
        "clutter": 1,
        "transients": 1,
        "camera_jitter": 0.3,
    }
    base.update(overrides)
    return DatasetConfig.model_validate(base)


@pytest.fixture(scope="session")
def small_dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "small"
    return build_dataset(small_config(), out)

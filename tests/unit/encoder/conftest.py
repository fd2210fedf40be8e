from __future__ import annotations

from pathlib import Path

import pytest

from tests.contract.encoder import kit


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models: "a" and "b" (different weights), "fixed" (batch axis fixed at 2)."""
    d = tmp_path_factory.mktemp("onnx-unit")
    return {
        "a": kit.export_tiny_model(d / "a.onnx", seed=0),
        "b": kit.export_tiny_model(d / "b.onnx", seed=1),
        "fixed": kit.export_tiny_model(d / "fixed.onnx", seed=0, batch_axis=False),
    }

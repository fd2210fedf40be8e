"""docs/ADDING_A_MODEL.md's worked example: one file registers, builds, keeps the contract,
trains and exports with parity."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from services.trainer import zoo
from services.trainer.registry import ENCODERS
from tests.unit.trainer.zoo_kit import QUICK, clip

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "tiny_c3d.py"
MODULE = "trajlab_docs_examples_tiny_c3d"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    """Import the example file as a user would import their new module (once: it registers)."""
    if MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE, EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module
        spec.loader.exec_module(module)
    return sys.modules[MODULE]


def test_the_example_registers_and_keeps_the_contract(example: ModuleType) -> None:
    assert "tiny_c3d" in ENCODERS
    assert zoo.origin_of(ENCODERS.get("tiny_c3d")) == "example"
    enc = zoo.build("tiny_c3d", QUICK)
    out = enc(clip(QUICK, 2))
    assert out.pooled.shape == (2, 32)
    assert {k: tuple(v.shape) for k, v in out.taps.items()} == {
        "conv1": (2, 8, 16, 32, 32), "conv2": (2, 16, 16, 16, 16), "conv3": (2, 32, 8, 8, 8)
    }


def test_the_example_trains(example: ModuleType) -> None:
    """An epoch over a few fixed clips, twice over: a classifier on its pooled features fits them."""
    torch.manual_seed(0)
    enc = zoo.build("tiny_c3d", QUICK, {"channels": (4, 8, 16)}).train()
    head = torch.nn.Linear(enc.out_dim, 4)
    clips, labels = clip(QUICK, 8), torch.arange(8) % 4
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(2 * 15):
        for i in range(0, 8, 4):
            loss = torch.nn.functional.cross_entropy(head(enc(clips[i:i + 4]).pooled), labels[i:i + 4])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4


def test_the_example_exports_with_parity_and_takes_the_perception(example: ModuleType) -> None:
    entry = zoo.describe("tiny_c3d", QUICK)
    assert entry.onnx_parity is True, entry.parity_detail
    assert entry.perception and "conv1" in entry.perception_reason
    assert zoo.require_exportable("tiny_c3d", QUICK, {}).ok

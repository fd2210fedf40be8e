"""Shared bits of the zoo tests: the registry, filled, and the profiles' clip sizes."""

from __future__ import annotations

import torch

from services.trainer import zoo
from trajlab.profiles import load_profile

REGISTRY = zoo.load_encoders()
STANDARD_ORIGINS = ("vendored torchvision", "transformers")
# The branch model's default stem (background subtraction) gives the encoder 9 channels.
QUICK = zoo.input_size_for(load_profile("quick"), in_channels=9)
SEED = zoo.input_size_for(load_profile("seed"), in_channels=9)


def standard_names() -> list[str]:
    return [e.name for e in REGISTRY if zoo.origin_of(e) in STANDARD_ORIGINS]


def clip(size: zoo.InputSize, batch: int = 2) -> torch.Tensor:
    return zoo.example_clip(size, batch=batch)

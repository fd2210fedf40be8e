"""The branch's heads (registered in HEADS): motion class and forecast from one feature vector."""

from __future__ import annotations

from torch import nn

from services.trainer.registry import HEADS


@HEADS.register("classify_forecast", source="trajlab seed")
def create_heads(*, in_dim: int, num_classes: int, horizon: int, hidden_dim: int = 256) -> nn.ModuleDict:
    """Classification and forecast heads.
    ::

        x (N, in_dim) -> Linear -> logits (N, num_classes)
        x (N, in_dim) -> Linear+ReLU (N, 256) -> Linear -> (N, horizon*3) -> (N, horizon, 3), normalised units
    """
    return nn.ModuleDict(
        {
            "classify": nn.Linear(in_dim, num_classes),
            "forecast": nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, horizon * 3)
            ),
        }
    )


"""What a trained model costs: FLOPs per clip and the training run's wall and CPU time.

FLOPs come from torch's own ``torch.utils.flop_counter.FlopCounterMode`` (the same count
as ``trajlab zoo``, :func:`services.trainer.zoo.count_flops`): 2 FLOPs per multiply-add of
the convolutions and matrix products it knows, for one forward pass of the whole branch
model (stem, encoder, perception, heads) on one real clip at the profile's size. Element-wise
operations are not counted, so the figure is a lower bound that compares models fairly.

CPU time is the trainer process's own (``time.process_time``: user + system over all of its
threads, torch's intra-op threads included), measured per epoch by the step loop and summed
here, so a resumed run adds up the epochs of every attempt that reached its checkpoint.
A trainer is one process per run (``trajlab run`` starts one each), so the figure is that
run's compute; a history without a per-epoch figure (a checkpoint from before it was
measured) leaves the CPU time out rather than guessing it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def flops_per_clip(model: nn.Module, clip: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on one clip (the first of ``clip``, model input (N, C, T, H, W))."""
    from torch.utils.flop_counter import FlopCounterMode

    if clip.ndim != 5 or clip.shape[0] < 1:
        raise ValueError(
            f"flops_per_clip: expected a (N, C, T, H, W) model input, got shape {tuple(clip.shape)}"
        )
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(clip[:1])
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def training_cost(history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """``training_seconds`` (wall) and, when every epoch has it, ``training_cpu_seconds``."""
    out = {"training_seconds": float(sum(float(h["duration_seconds"]) for h in history))}
    cpu = [h.get("cpu_seconds") for h in history]
    if history and all(isinstance(c, (int, float)) and math.isfinite(c) and c >= 0 for c in cpu):
        out["training_cpu_seconds"] = float(sum(cpu))  # type: ignore[arg-type]
    return out

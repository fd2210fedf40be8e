"""The combined training loss: classification + weighted forecast + weighted auxiliary term.

``total = CE(logits, labels) + forecast_weight * SmoothL1(forecast, target)
          + aux_weight * aux``, where ``aux`` is the autoencoder's reconstruction MSE
(compression) or CLIP's InfoNCE toward the class descriptions (text alignment).
Forecast targets are normalised per (step, axis) by the training split's
statistics, so the forecast term is unit-free and comparable across datasets.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from services.trainer.models import BranchOutput


def combined_loss(
    out: BranchOutput,
    labels: torch.Tensor,
    forecast_target: torch.Tensor,
    *,
    forecast_weight: float,
    aux_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Returns (total, parts); parts holds the unweighted terms (detached) for logging."""
    ce = F.cross_entropy(out.logits, labels)
    forecast = F.smooth_l1_loss(out.forecast, forecast_target)
    total = ce + forecast_weight * forecast
    parts = {"ce": ce.detach(), "forecast": forecast.detach()}
    if out.reconstruction is not None:
        # The target is detached so the reconstruction term cannot shrink the features
        # themselves to make its job easier; it only shapes the autoencoder.
        recon = F.mse_loss(out.reconstruction, out.features.detach())
        total = total + aux_weight * recon
        parts["reconstruction"] = recon.detach()
    if out.text_logits is not None:
        align = F.cross_entropy(out.text_logits, labels)
        total = total + aux_weight * align
        parts["alignment"] = align.detach()
    return total, parts

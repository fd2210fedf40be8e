"""Each frame's depth corrected from what the mask says about the sphere (DepthCues)."""

from __future__ import annotations

import torch
from torch import nn


class DepthCues(nn.Module):
    """Each frame's depth from what the mask says about the sphere, mixed over time.

    The renderer draws the sphere ``sqrt(4 / z)`` times its full colour, whose brightest
    channel is 1 (a saturated, bright hue), Lambertian-shaded with the light behind the
    camera: the brightest pixel under the mask reads ``log z`` better than the depth map's
    mask-weighted mean, but with heavy tails (a sphere behind a distractor, a mask that leaks
    onto one).
    Per frame this takes four cues, all detached (they are the inputs of a learned
    correction, not something to bend the mask toward): the log of the mask's peak
    brightness (``max m V``, V the brightest colour channel in [0, 1]), the log of its area
    (the size cue, ``z ~ 1 / sqrt(area)``), its mean brightness and the depth map's own
    estimate; a two-layer temporal conv (5 frames: depth changes smoothly, and the frames
    around one whose peak is hidden still show it) reads them into a log-depth offset that starts at
    zero, so an untrained module leaves the depth as it was (its measured effect: bench/RESULTS.md).
    ::

        mask (N, T, H, W), brightness (N, T, H, W), log depth (N, T)
          -> [log (max m V + 0.05), log area, mean m V, log depth] (N, 4, T)
          -> Conv1d 5 (64) -> ReLU -> Conv1d 5 (64) -> ReLU -> Conv1d 1 -> log-depth offset (N, T)
    """

    def __init__(self, *, hidden: int = 64, kernel: int = 5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(4, hidden, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2),
            nn.ReLU(inplace=True),
        )
        self.out = nn.Conv1d(hidden, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, m: torch.Tensor, brightness: torch.Tensor, area: torch.Tensor, log_depth: torch.Tensor
    ) -> torch.Tensor:
        """Mask and brightness (N, T, H, W), the mask's area and mean log depth (N, T) -> offset (N, T)."""
        lit = m * brightness
        # Every cue bounded, so no frame can throw the convs off: log(peak + 0.05) >= -3 on an
        # empty mask, the area is at least the empty-mask prior. (A BatchNorm here learned its
        # running variance from training batches with hidden spheres, 5x that of the validation
        # clips', and the validation track swung between 5 and 28 % of extent epoch to epoch.)
        peak = lit.amax(dim=(2, 3))
        mean = lit.sum(dim=(2, 3)) / area
        cues = torch.stack([(peak + 0.05).log(), area.log(), mean, log_depth], dim=1).detach().float()
        return self.out(self.body(cues))[:, 0]


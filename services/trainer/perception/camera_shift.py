"""Each frame's camera shift, read off the static background (CameraShift)."""

from __future__ import annotations

import torch
from torch import nn


class CameraShift(nn.Module):
    """Each frame's whole-pixel shift of the view (a camera's jitter), read off the static background.

    The renderer's camera jitter shifts the whole view of a frame, background and object alike,
    by whole pixels, while the positions to recover are the object's in the world: a track read
    off the image carries the shift. The
    static background says what the shift was: each frame, moved back by each candidate shift
    (du, dv) in [-max_shift, max_shift]^2, is compared (mean absolute difference over the image
    inside the margin) with a reference, and the candidates are weighed by a softmin of that
    difference relative to the best (smooth for the export). The first reference is the clip's
    temporal mean, blurred by the frames that moved; the next (``passes``) is the mean of the
    frames moved back by their estimated shifts (two passes at sharpness 30 recover larger
    jitter exactly; bench/RESULTS.md). Grey levels on every other row and column are enough,
    and cheap. No parameters; the frames are read detached.
    ::

        frames (N, C, T, H, W) -> grey (N, T, H, W)
          -> moved back by each candidate, every other pixel (K x (N, T, H/2 - m, W/2 - m))
          -> |moved - reference|, averaged (N, T, K) -> softmin -> weights
          [-> reference = mean over T of the moved frames, weighed -> again]   (N, T, 2) pixels
    """

    def __init__(self, max_shift: int, sharpness: float = 30.0, passes: int = 2) -> None:
        super().__init__()
        if max_shift < 1:
            raise ValueError(f"camera shift: max_shift must be >= 1, got {max_shift}")
        if passes < 1:
            raise ValueError(f"camera shift: passes must be >= 1, got {passes}")
        self.max_shift = int(max_shift)
        self.sharpness = float(sharpness)
        self.passes = int(passes)
        steps = range(-self.max_shift, self.max_shift + 1)
        self.candidates = [(du, dv) for dv in steps for du in steps]
        self.register_buffer(
            "offsets", torch.tensor(self.candidates, dtype=torch.float32), persistent=False
        )  # (K, 2)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Grey levels are enough to match a textured background, at a third of the work.
        x = frames.detach().mean(dim=1).contiguous()  # (N, T, H, W)
        h, w = x.shape[-2:]
        m = self.max_shift
        if h <= 2 * m or w <= 2 * m:
            raise ValueError(f"camera shift: a {h}x{w} frame has nothing inside a {m}-pixel margin")
        # frame[v + dv, u + du] shows what an unshifted frame shows at (v, u): each frame moved
        # back by each candidate, inside the margin (N, T, H - 2m, W - 2m); one candidate at a
        # time, so memory stays that of the clip.
        # Every other row and column is enough to tell whole-pixel shifts apart, at a quarter of the work.
        moved = [x[..., m + dv : h - m + dv : 2, m + du : w - m + du : 2] for du, dv in self.candidates]
        ref = x.mean(dim=1, keepdim=True)[..., m : h - m : 2, m : w - m : 2]
        for step in range(self.passes):
            scores = torch.stack([(c - ref).abs().mean(dim=(2, 3)) for c in moved], dim=-1)  # (N, T, K)
            best = scores.amin(dim=-1, keepdim=True)
            weights = torch.softmax(-self.sharpness * scores / (best + 1e-6), dim=-1)
            if step + 1 < self.passes:
                # Next reference: the frames moved back by their estimated shifts, averaged.
                aligned = sum(weights[..., k, None, None] * c for k, c in enumerate(moved))
                ref = aligned.mean(dim=1, keepdim=True)
        return weights @ self.offsets  # (N, T, 2)


"""Motion class from the shape of the track alone (TrackClassifier), and its training-time noise."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TrackClassifier(nn.Module):
    """Motion class from the shape of the track alone; its logits are added to the head's.

    The motion classes are defined by the 3D path, and an MLP on the (predicted) track's
    motion features tells them apart better than the classify head, which reads the pooled
    conv features and overfits them (bench/RESULTS.md).
    It reads the track detached, so the track stays
    supervised by the positions only, and has its own cross-entropy
    (:func:`services.trainer.losses.combined_loss`), so it learns to classify on its own
    however confident the head becomes on the training split. In training it also scores
    the time-reversed track (every motion class run backwards is the same class: a line,
    circle, helix, or a parabola under the same gravity), which doubles what it sees.
    ::

        motion features (N, in_dim) -> Linear -> ReLU -> Dropout
          -> Linear -> ReLU -> Dropout -> Linear                  logits (N, K)
    """

    def __init__(self, *, in_dim: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.3) -> None:
        """``in_dim``: the width of the motion features it reads (the perception's)."""
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.net(motion)



def borrowed_track_error(track: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """True positions (N, T, 3) plus the track's error (N, T, 3) of another clip in the batch.

    What the track classifier meets on validation clips is the readout's track, whose error
    (a per-clip depth scale and per-frame jitter, mostly in depth) is larger there than on the
    training clips it fits. Learning also on the true positions with an error borrowed from a
    random other clip (a fresh pairing each step, the error taken relative to that clip's depth
    and scaled to this one's, since it grows with depth) shows it many more noisy versions of
    each path than the training clips alone would (its measured effect: bench/RESULTS.md).
    Draws from torch's global generator, seeded per epoch like the rest of training.
    """
    depth = observed[..., 2:3].clamp_min(1e-3)
    relative = (track - observed) / depth
    return observed + relative[torch.randperm(len(track), device=track.device)] * depth



def noisy_track_logits(
    classifier: TrackClassifier, motion: Callable[[torch.Tensor], torch.Tensor], world: torch.Tensor,
    observed: torch.Tensor,
) -> torch.Tensor:
    """Training only: the classifier on the true positions (N, T, 3) carrying another clip's
    error of the model's track ``world`` (N, T, 3), forwards then time-reversed -> (2N, K).

    ``motion`` turns a world track into the classifier's input (the perception's
    ``motion_features``). Labels for these logits are the batch's, repeated twice.
    """
    noisy = borrowed_track_error(world.detach(), observed.to(world.dtype))
    return classifier(motion(torch.cat([noisy, noisy.flip(1)])))

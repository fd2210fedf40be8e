"""The combined training loss: classification + weighted forecast + weighted auxiliary terms.

``total = CE(logits, labels) + forecast_weight * SmoothL1(forecast, target) + aux_weight * aux
          + CE(track_logits, labels)
          + track_weight * (L1(track, observed) + BCE(mask, disc) + Dice(mask, disc))
          + track_weight * L1(positions, observed)``,
where ``aux`` is the autoencoder's reconstruction MSE (compression) or CLIP's InfoNCE
toward the class descriptions (text alignment), and the track terms (models with the
track readout only) supervise the per-frame 3D points with the observed positions and
the per-frame object mask with the disc the sphere covers in the image. ``CE(track_logits)``
is the track classifier's own cross-entropy (in training the mean over the track and its time
reversal, and, with ``track_classifier_noise``, averaged with the same on the true positions
carrying another clip's track error), with the track classifier only. ``positions`` is the
position head's reading of the observed track (models without the track perception that have
one, ``model.position_head``).
Forecast and track targets are normalised by the training split's statistics, so
those terms are unit-free and comparable across datasets.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from services.trainer.branch import BranchModel, BranchOutput
from services.trainer.perception.track_classifier import noisy_track_logits
from trajlab.data.camera import pinhole


class TrackTarget(NamedTuple):
    points: torch.Tensor  # (N, T, 3) observed positions, normalised like the readout's points
    masks: torch.Tensor  # (N, T, H, W) fraction of each pixel the sphere covers, in [0, 1]


def disc_masks(
    observed: torch.Tensor,
    *,
    height: int,
    width: int,
    focal_px: float,
    radius: float,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, T, 3) world positions -> (N, T, H, W) coverage of the sphere's disc per pixel.

    ``shift`` (N, T, 2): the camera's shift (du, dv) of each frame in pixels, which moves the
    disc where the image shows it.

    The renderer's pinhole geometry (`trajlab.data.camera.pinhole`): centre ``u = W/2 + f x / z``,
    ``v = H/2 - f y / z``, radius ``f R / z`` pixels; a pixel is covered by the fraction
    ``clamp(r - d + 0.5, 0, 1)`` of its centre's distance ``d`` to the edge (antialiased).
    """
    z = observed[..., 2].clamp_min(1e-3)
    # (N, T) each
    u, v = pinhole(observed[..., 0], observed[..., 1], z, focal=focal_px, cx=width / 2, cy=height / 2)
    if shift is not None:
        u = u + shift[..., 0].to(u.dtype)
        v = v + shift[..., 1].to(v.dtype)
    r = focal_px * radius / z
    cols = torch.arange(width, dtype=observed.dtype) + 0.5
    rows = torch.arange(height, dtype=observed.dtype) + 0.5
    du = cols.reshape(1, 1, 1, width) - u[..., None, None]
    dv = rows.reshape(1, 1, height, 1) - v[..., None, None]
    d = torch.sqrt(du * du + dv * dv)
    return (r[..., None, None] - d + 0.5).clamp(0.0, 1.0)


def track_target(
    model: BranchModel, observed: torch.Tensor, shift: torch.Tensor | None = None
) -> TrackTarget | None:
    """The track readout's targets for observed world positions (N, T, 3); None without a readout.

    ``shift`` (N, T, 2), the camera shift the readout read off the clips (``Track.shift``), puts
    each mask target where the image shows the object; the points stay the world's.
    """
    readout = model.perception
    if readout is None:
        return None
    a = model.args
    masks = disc_masks(
        observed,
        height=a.height,
        width=a.width,
        focal_px=a.focal_px,
        radius=a.object_radius,
        shift=None if shift is None else shift.detach(),
    )
    return TrackTarget(readout.normalise(observed), masks)


def position_target(model: BranchModel, observed: torch.Tensor) -> torch.Tensor | None:
    """The position head's target for observed world positions (N, T, 3), normalised per axis by
    the forecast's first-step statistics; None for a model without the head."""
    if model.position is None:
        return None
    return (observed - model.forecast_mean[0]) / model.forecast_std[0]


def track_classifier_noise(
    model: BranchModel, out: BranchOutput, observed: torch.Tensor
) -> torch.Tensor | None:
    """Training only: the track classifier's logits (2N, K) on the true observed positions (N, T, 3)
    carrying another clip's track error; None for a model without a track classifier.

    What the track classifier meets on validation clips is the perception's track, whose error is
    larger there than on the training clips it fits; this shows it more noisy versions of each path.
    """
    world = model.observed_world(out)
    if model.track_classifier is None or world is None:
        return None
    return noisy_track_logits(model.track_classifier, model.motion_features, world, observed)


def combined_loss(
    out: BranchOutput,
    labels: torch.Tensor,
    forecast_target: torch.Tensor,
    *,
    forecast_weight: float,
    aux_weight: float,
    track: TrackTarget | None = None,
    track_weight: float = 1.0,
    noisy_track_logits: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Returns (total, parts); parts holds the unweighted terms (detached) for logging.

    ``noisy_track_logits`` (2N, K), training only: the track classifier on the true positions
    with another clip's track error (:func:`track_classifier_noise`); ``positions`` (N, T, 3), the
    position head's target (:func:`position_target`).
    """
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
    if out.track_logits is not None:
        # The track classifier learns on its own (and on the time-reversed track in training),
        # not only through the sum, which the head's confidence on the training split saturates.
        track_ce = F.cross_entropy(out.track_logits, labels)
        if out.reversed_track_logits is not None:
            track_ce = 0.5 * (track_ce + F.cross_entropy(out.reversed_track_logits, labels))
        if noisy_track_logits is not None:  # (2N, K): forwards, then reversed
            noisy_ce = F.cross_entropy(noisy_track_logits, labels.repeat(2))
            track_ce = 0.5 * (track_ce + noisy_ce)
        total = total + track_ce
        parts["track_ce"] = track_ce.detach()
    if out.track is not None and track is not None:
        # L1, not smooth L1: the track's errors are a fraction of a standard deviation, where
        # smooth L1 is quadratic and its gradient fades with the error. (Alone it made no
        # measurable difference by epoch 6 of 10 on the seed set, b1: 13.3 vs 12.8 % of
        # extent; it was kept with the stem's value plane, which did, in one run.)
        points = F.l1_loss(out.track.points, track.points)
        # BCE alone is dominated by the thousands of easy background pixels and learns the
        # object slowly; the soft Dice term (Milletari et al., V-Net, 2016) scores the overlap
        # per frame, so any mass off the object (which drags the centroid and inflates the
        # area) costs as much as missing the object.
        logits = out.track.mask_logits
        prob = torch.sigmoid(logits)
        overlap = (prob * track.masks).sum(dim=(2, 3))
        dice = 1.0 - (2.0 * overlap + 1.0) / (prob.sum(dim=(2, 3)) + track.masks.sum(dim=(2, 3)) + 1.0)
        mask = F.binary_cross_entropy_with_logits(logits, track.masks) + dice.mean()
        total = total + track_weight * (points + mask)
        parts["track"] = points.detach()
        parts["mask"] = mask.detach()
    if out.positions is not None and positions is not None:
        position = F.l1_loss(out.positions, positions)
        total = total + track_weight * position
        parts["position"] = position.detach()
    return total, parts

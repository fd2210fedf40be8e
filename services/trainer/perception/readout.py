"""The object-track readout: per-frame soft mask and depth map from an encoder's taps -> 3D points."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from services.trainer.encoders.contract import TapSpec
from services.trainer.perception.camera_shift import CameraShift
from services.trainer.perception.depth_cues import DepthCues
from services.trainer.perception.motion import TrackShape
from services.trainer.perception.sphere_fit import SphereFit
from services.trainer.perception.stem import frame_value
from services.trainer.perception.taps import TapChoice, choose_taps


class Track(NamedTuple):
    """What a :class:`TrackReadout` sees in a clip."""

    points: torch.Tensor  # (N, T, 3) object position per observed frame, normalised world units
    mask_logits: torch.Tensor  # (N, T, H, W) per-pixel logits of "the moving object covers this pixel"
    # (N, T, 2) the camera's shift (du, dv) of each frame in pixels, read off the background;
    # None without camera_shift. The mask sits where the image shows the object (shifted).
    shift: torch.Tensor | None = None
    # (N, T, 3) normalised world units: the points after SphereFit (what the heads read);
    # None without sphere_fit. ``points`` stays the readout's own (what its loss trains).
    fitted: torch.Tensor | None = None
    # (N, T) in [0, 1]: how sure the readout is that it sees the object in each frame
    # (TrackReadout.confidence); what the export serves as ``track_confidence``.
    confidence: torch.Tensor | None = None
    # (N, D) the motion features (TrackShape) of the track the heads read, world units: computed
    # once, for the readout's summary and the branch's track classifier.
    motion: torch.Tensor | None = None


EMPTY_MASK_PRIOR = 0.5  # pixels of mask mass at the image centre (see TrackReadout.points_from)
# Pixels the mask must be sure of (mask > 0.5, counted by a ramp) for a frame's confidence to be 1.
SEEN_PIXELS = 4.0


class TrackReadout(nn.Module):
    """Per-frame object track from full-frame-rate features: a soft mask and a depth map.

    Pooled conv features say *what* moves but blur *where*, and the forecast is in
    absolute 3D. The readout predicts, for every frame, a soft mask ``m`` of the moving
    object at the clip's full resolution and a log-depth map ``d``, from two of the encoder's
    taps (:mod:`services.trainer.perception.taps`; for the seed encoders their first two conv
    blocks before time is pooled), the way U-Net/FPN decoders mix a fine and a coarse level:
    a small 3x3x3 conv on the coarse tap (for the seed encoders half resolution; with it a
    receptive field of ~12 pixels and 7 frames, enough to tell the shaded sphere from flat
    distractors and static clutter) gives the coarse mask logits and ``d``, both upsampled
    to the clip's size, and a 1x3x3 conv on the fine tap adds the sharp edges. The
    mask's centroid gives the object's image position (a spatial soft-argmax, Levine et
    al., "End-to-End Training of Deep Visuomotor Policies", 2016), the mask-weighted mean
    of ``d`` its depth ``z = z_mean * exp(d)``, and the pinhole camera the rest:
    ``x = z (u - cx) / f``, ``y = -z (v - cy) / f`` (:mod:`trajlab.data.camera`). Depth is
    learned rather than read from the mask's area (a learned mask's area is too rough a
    depth cue, bench/RESULTS.md), while the network can also read the sphere's
    brightness, which falls as ``sqrt(4 / z)``; with ``depth_cues``, :class:`DepthCues`
    corrects each frame's depth from the mask's peak brightness and area, over 5 frames.
    Mask and points are supervised by the observed positions
    (:func:`services.trainer.losses.combined_loss`).

    What the heads get from the track is translation-invariant: every point relative to
    the last one, the per-frame steps and their changes (velocity and acceleration),
    each scaled by its spread on the training split, through a two-layer MLP. Motion
    class and the next positions depend on the shape of the path, not on where it is.
    ::

        coarse tap (N, c2, T/st, H/ss, W/ss) -> Conv3d 3x3x3 -> ReLU     (N, 16, T/st, H/ss, W/ss)
          -> Conv3d 1x3x3 (mask), Conv3d 1x3x3 (log depth) -> upsample x (st, ss, ss)
        fine tap (N, c1, T/st', H/ss', W/ss') -> Conv3d 1x3x3 [-> upsample] (+ coarse)
                                                                 mask logits (N, T, H, W)
          -> sigmoid -> centroid (u, v), mean log depth (+ DepthCues)
          -> (x, y, z)                                                 (N, T, 3) world units
          -> [p - p_last, steps, changes of steps] -> MLP              (N, hidden): the track's share
    """

    def __init__(
        self,
        *,
        taps: dict[str, TapSpec],
        frames: int,
        height: int,
        width: int,
        focal_px: float,
        hidden_dim: int = 256,
        coarse_hidden: int = 16,
        depth_cues: bool = False,
        camera_shift: int = 0,
        object_radius: float = 0.0,
        spreads: bool = False,
    ) -> None:
        """``taps`` is the encoder's (``VideoEncoder.taps``); ``object_radius`` > 0 (world units)
        fits each frame's sphere to its pixels (SphereFit); ``spreads`` adds the track's principal
        spreads to its motion features (what the summary and the track classifier read)."""
        super().__init__()
        if focal_px <= 0:
            raise ValueError(f"track readout needs focal_px > 0, got {focal_px}")
        if height % 2 or width % 2:
            raise ValueError(f"track readout needs an even clip size, got H={height}, W={width}")
        if frames < 3:
            raise ValueError(f"track readout needs at least 3 frames, got {frames}")
        self.choice = choose_taps(taps, frames=frames, height=height, width=width)
        coarse_channels = self.choice.coarse_spec.channels
        self.coarse_body = nn.Sequential(
            nn.Conv3d(coarse_channels, coarse_hidden, (3, 3, 3), padding=(1, 1, 1)), nn.ReLU(inplace=True)
        )
        self.coarse_mask = nn.Conv3d(coarse_hidden, 1, (1, 3, 3), padding=(0, 1, 1))
        # Starts at log depth 0 everywhere: the training split's mean depth.
        self.coarse_depth = nn.Conv3d(coarse_hidden, 1, (1, 3, 3), padding=(0, 1, 1))
        nn.init.zeros_(self.coarse_depth.weight)
        nn.init.zeros_(self.coarse_depth.bias)
        self.cues = DepthCues() if depth_cues else None
        self.camera_shift = CameraShift(camera_shift) if camera_shift > 0 else None
        self.sphere_fit = (
            SphereFit(height=height, width=width, focal_px=focal_px, radius=object_radius)
            if object_radius > 0
            else None
        )
        self.height, self.width = int(height), int(width)
        self.focal_px = float(focal_px)
        self.mask = nn.Conv3d(self.choice.fine_spec.channels, 1, (1, 3, 3), padding=(0, 1, 1))
        # Start with an almost empty mask (sigmoid(-4) = 1.8 %): the mask loss only has to
        # switch the object's pixels on.
        nn.init.constant_(self.mask.bias, -4.0)
        f = float(focal_px)
        # Pixel centres in units of the focal length: x / z = (u - cx) / f, y / z = -(v - cy) / f.
        xs = (torch.arange(width, dtype=torch.float32) + 0.5 - width / 2) / f
        ys = -(torch.arange(height, dtype=torch.float32) + 0.5 - height / 2) / f
        self.register_buffer("grid_x", xs.reshape(1, 1, 1, width), persistent=False)
        self.register_buffer("grid_y", ys.reshape(1, 1, height, 1), persistent=False)
        # Normalisation of the points (per axis), set from the training split (set_stats) and
        # saved with the weights; the shape holds the motion features' scales the same way.
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("std", torch.ones(3))
        self.shape = TrackShape(frames, spreads=spreads)
        self.summary = nn.Sequential(
            nn.Linear(self.shape.dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
        )

    @property
    def out_features(self) -> int:
        return int(self.summary[2].out_features)

    def set_stats(self, observed: torch.Tensor) -> None:
        """Statistics of the training split's observed positions (N, T, 3), world units."""
        obs = observed.to(self.mean.dtype)
        self.mean.copy_(obs.reshape(-1, 3).mean(0))
        self.std.copy_(obs.reshape(-1, 3).std(0).clamp_min(1e-6))
        self.shape.set_stats(obs)

    def normalise(self, world: torch.Tensor) -> torch.Tensor:
        """(..., 3) world positions -> the units of ``Track.points``."""
        return (world - self.mean) / self.std

    def to_world(self, points: torch.Tensor) -> torch.Tensor:
        """``Track.points`` (..., 3) -> world positions."""
        return points * self.std + self.mean

    def forward(
        self, taps: dict[str, torch.Tensor], stem: torch.Tensor | None = None
    ) -> tuple[Track, torch.Tensor]:
        """The encoder's taps (``VideoFeatures.taps``) -> track, summary (N, hidden).

        ``stem`` (N, C, T, H, W), the encoder's input, is where the depth cues, the camera shift
        and the sphere fit read the frames.
        """
        h = self.coarse_body(taps[self.choice.coarse])
        up = _upsample(
            torch.cat([self.coarse_mask(h), self.coarse_depth(h)], dim=1), self.choice.coarse_spec
        )
        logits = (_upsample(self.mask(taps[self.choice.fine]), self.choice.fine_spec) + up[:, :1])[:, 0]
        # The mask's sums in float64: a frame whose sphere is hidden has a mask of sigmoid tails
        # (~1e-5 per pixel), whose float32 sums over 4,096 pixels PyTorch and ONNX Runtime round
        # differently enough to fail the export's parity gate. float64 costs little on (N, T, H, W).
        m = torch.sigmoid(logits.double())
        brightness = shift = None
        if self.cues is not None or self.camera_shift is not None or self.sphere_fit is not None:
            if stem is None:
                raise ValueError("this track readout reads the frames (depth cues, camera shift or "
                                 "sphere fit) and needs the stem's output")
            # (N, T, H, W): V in [0, 1]
            brightness = frame_value(stem)
        if self.camera_shift is not None:
            shift = self.camera_shift(stem[:, :3])  # (N, T, 2) pixels
        world = self.points_from(
            m, up[:, 1].double(), brightness if self.cues is not None else None, shift
        ).float()  # (N, T, 3)
        fitted = read = None
        confidence = self.confidence(m)
        if self.sphere_fit is not None:
            read, fit_confidence = self.fit_with_confidence(world, brightness, shift)
            fitted = self.normalise(read)
            confidence = torch.maximum(confidence, fit_confidence)
        motion = self.shape(world if read is None else read)
        track = Track(self.normalise(world), logits, shift, fitted, confidence, motion)
        return track, self.summary(motion)

    @staticmethod
    def confidence(m: torch.Tensor) -> torch.Tensor:
        """Mask (N, T, H, W) in [0, 1] (float64) -> each frame's confidence (N, T) float32 in [0, 1].

        The mask has no calibrated per-frame score, so the confidence is read off its mass: the
        pixels it is sure of (a ramp from 0 at mask 0.5 to 1 at mask 1), over SEEN_PIXELS. A frame
        whose sphere is hidden (a mask of sigmoid tails), or a mask still spread thin (an untrained
        readout starts at 1.8 % everywhere), gets 0; a frame with a few sure pixels gets 1. It says
        whether the object was seen, not how far off the point is. Continuous, so the export's
        parity gate holds.
        """
        sure = torch.clamp(2.0 * m - 1.0, min=0.0).sum(dim=(2, 3))
        return torch.clamp(sure / SEEN_PIXELS, max=1.0).float()

    def fit(self, world: torch.Tensor, brightness: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
        """The readout's points (N, T, 3) refined by SphereFit on the frames' V (N, T, H, W) in [0, 1]."""
        return self.fit_with_confidence(world, brightness, shift)[0]

    def fit_with_confidence(
        self, world: torch.Tensor, brightness: torch.Tensor, shift: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`fit`'s points (N, T, 3) and SphereFit's confidence (N, T) in [0, 1].

        Each frame's fit counts in proportion to its confidence, the readout's point in the rest
        (a sphere hidden behind a distractor keeps the readout's point, and its gradient).
        """
        f = self.focal_px
        cx, cy = self.width / 2.0, self.height / 2.0
        du = shift[..., 0] if shift is not None else torch.zeros_like(world[..., 0])
        dv = shift[..., 1] if shift is not None else torch.zeros_like(world[..., 0])
        z = world[..., 2].clamp_min(1e-3)
        # Where the image shows the sphere: the camera's shift put back on.
        u = cx + f * world[..., 0] / z + du
        v = cy - f * world[..., 1] / z + dv
        uf, vf, zf, confidence = self.sphere_fit(brightness * 255.0, u, v, z)
        fitted = torch.stack([(uf - du - cx) * zf / f, -(vf - dv - cy) * zf / f, zf], dim=-1)
        c = confidence[..., None]
        return c * fitted + (1.0 - c) * world, confidence

    def centroid(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask (N, T, H, W) -> its centroid as x/z and y/z (N, T) and its mass (N, T), prior included."""
        # EMPTY_MASK_PRIOR pixels of prior mass at the image centre and the mean depth: a
        # frame whose mask is (nearly) empty, the sphere hidden behind a distractor, falls
        # back there smoothly instead of dividing sums of sigmoid tails by each other (in
        # float32 those sums failed the export's parity gate: a 0.03-pixel mask, 1.1e-3 off;
        # the readout now also sums in float64). On a visible sphere (20-120 pixels) it pulls
        # the centroid 0.4-2 % of the way to the centre, which training absorbs.
        area = m.sum(dim=(2, 3)) + EMPTY_MASK_PRIOR  # (N, T) pixels^2
        xn = (m * self.grid_x).sum(dim=(2, 3)) / area
        yn = (m * self.grid_y).sum(dim=(2, 3)) / area
        return xn, yn, area

    def points_from(
        self,
        m: torch.Tensor,
        log_depth: torch.Tensor,
        brightness: torch.Tensor | None = None,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask (N, T, H, W) in [0, 1], log-depth map (N, T, H, W) -> world (N, T, 3).

        With depth cues, ``brightness`` (N, T, H, W) is each pixel's V in [0, 1]; ``shift``
        (N, T, 2), the camera's shift of each frame in pixels, is taken off the mask's centroid.
        """
        xn, yn, area = self.centroid(m)
        if shift is not None:  # u = cx + f x / z + du, v = cy - f y / z + dv
            xn = xn - shift[..., 0].to(xn.dtype) / self.focal_px
            yn = yn + shift[..., 1].to(yn.dtype) / self.focal_px
        d = (m * log_depth).sum(dim=(2, 3)) / area
        if self.cues is not None and brightness is not None:
            d = d + self.cues(m, brightness, area, d)
        z = self.mean[2] * torch.exp(d)
        return torch.stack([xn * z, yn * z, z], dim=-1)



def _upsample(x: torch.Tensor, spec: TapSpec) -> torch.Tensor:
    """A map at ``spec``'s strides -> the clip's (T, H, W), nearest; a full-rate map as it is."""
    scale = TapChoice.scale(spec)
    if scale == (1.0, 1.0, 1.0):
        return x
    return nn.functional.interpolate(x, scale_factor=scale)  # nearest

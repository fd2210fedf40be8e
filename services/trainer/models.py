"""The branch models: video encoders, enhancements and heads, as pytorchvideo-style builders.

Every builder is keyword-only, returns an ``nn.Module`` and draws the tensor shapes
it produces. The four seed branches of DESIGN.md are thin presets over
:func:`create_branch_model`; a checkpoint stores the :class:`ModelArgs` it was built
with, so export and resume rebuild the exact model without the original config.

Input everywhere: ``clip`` float32 (N, 3, T, H, W) from :func:`trajlab.preprocess.to_model_input`.
A branch model first applies its stem (by default :class:`BackgroundSubtraction`, 3 -> 9
channels), so the encoders' ``in_channels`` (C below) is the stem's output width.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from trajlab.data.render import AMBIENT, LIGHT_DIRECTION, Z_REF
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD
from trajlab.profiles import CLASS_NAMES

FEATURE_DIM = 512  # width of every encoder's output feature, fixed by the seed spec
CODE_DIM = 128  # compression autoencoder bottleneck (512 -> 256 -> 128 -> 256 -> 512)


@dataclasses.dataclass(frozen=True)
class ModelArgs:
    """Everything needed to rebuild a branch model (stored in checkpoints, nanoGPT-style)."""

    encoder: str  # "i3d" or "dual_pathway"
    enhancement: str  # "compression", "text_alignment" or "none"
    frames: int  # T, observed frames per clip
    height: int  # H, pixels
    width: int  # W, pixels
    horizon: int  # future frames forecast
    channels: tuple[int, ...] = (16, 32, 64)  # conv widths of the three blocks
    in_channels: int = 3  # RGB
    num_classes: int = len(CLASS_NAMES)
    feature_dim: int = FEATURE_DIM
    pool_grid: tuple[int, int, int] = (4, 4, 4)  # adaptive-pool output (T', H', W'); keeps where/when
    alpha: int = 4  # dual pathway: the context pathway sees every alpha-th frame
    motion_channel_ratio: int = 2  # dual pathway: motion pathway is this many times thinner
    # "background_subtraction": the encoder sees each frame, each frame minus the clip's
    # temporal mean (static background and clutter cancel) and two pixel-coordinate
    # planes; "none": raw frames only.
    stem: str = "background_subtraction"
    # Object-track readout (TrackReadout): a per-frame soft mask of the moving object whose
    # centroid and area give its 3D position through the pinhole camera below; supervised by
    # the observed positions and fed to the features. Off = the plain encoder of the seed spec.
    track: bool = False
    depth_cues: bool = False  # the track readout's depth from its mask's brightness and area (DepthCues)
    track_classifier: bool = False  # logits from the track's shape added to the head's (TrackClassifier)
    # The forecast head's prior read off the track: "parametric" (ParametricExtrapolation: each
    # class's kind of path fitted to the track) or "affine" (ClassGatedExtrapolation, learned).
    forecast_prior: str = "affine"
    # Parametric prior only: Huber re-fits after the least-squares fit (0 = least squares alone,
    # as written before session 8).
    prior_refits: int = 0
    # Track readout only: the largest camera shift per frame (pixels) to read off the background
    # and undo (CameraShift); 0 = none (clips without camera jitter, and models before session 8).
    camera_shift: int = 0
    # Track readout only: each frame's sphere fitted to its pixels (SphereFit, render and
    # compare) from the readout's estimate, and what the heads read; off in models before session 9.
    sphere_fit: bool = False
    focal_px: float = 0.0  # camera focal length, pixels (track readout only)
    object_radius: float = 0.0  # the moving sphere's radius, world units (the track loss's disc target)
    text_dim: int = 0  # text-embedding width (text alignment only)
    text_encoder: str = ""  # name of the text encoder whose embeddings are baked in

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelArgs:
        d = dict(d)
        # Retired in session 5 (RoiDepth, never on by default); checkpoints written before carry it off.
        d.pop("roi_depth", None)
        for key in ("channels", "pool_grid"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def _conv_bn_relu(c_in: int, c_out: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> nn.Sequential:
    pad = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, padding=pad, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class BackgroundSubtraction(nn.Module):
    """(N, C, T, H, W) -> (N, 2C + 3, T, H, W): frames, frames minus their temporal mean, u, v, value.

    Static background and clutter cancel in the difference, the moving object stays;
    the two coordinate planes (u, v in [-1, 1], as in CoordConv, Liu et al. 2018) let
    convolutions, which are translation-equivariant, tell *where* that object is, which
    the absolute 3D forecast needs. The value plane is the brightest colour channel of
    each pixel (HSV's V): the renderer dims the sphere with depth (``sqrt(4 / z)`` of a
    colour of any hue), so V reads depth linearly where a ReLU conv over R, G and B
    would first have to learn a max over hues (on the seed set, b1 after 6 of 10
    epochs: track 7.6 vs 13.3 % of extent off, accuracy 0.81 vs 0.72). Part of the model
    (and of the exported graph), not of the preprocessing, so trainer and encoder still
    share one ``to_model_input``.
    """

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        v, u = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("coords", torch.stack([u, v])[None, :, None], persistent=False)  # (1,2,1,H,W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        coords = self.coords.expand(n, 2, t, h, w)
        value = x.amax(dim=1, keepdim=True)  # HSV's V (the normalisation is the same for R, G and B)
        return torch.cat([x, x - x.mean(dim=2, keepdim=True), coords, value], dim=1)


def create_stem(
    *, kind: str = "background_subtraction", in_channels: int = 3, height: int = 64, width: int = 64
) -> tuple[nn.Module, int]:
    """The input stem and the channels it outputs.

    ``background_subtraction``: 2 * in_channels + 3 (see :class:`BackgroundSubtraction`);
    ``none``: the raw frames.
    """
    if kind == "background_subtraction":
        return BackgroundSubtraction(height, width), 2 * in_channels + 3
    if kind == "none":
        return nn.Identity(), in_channels
    raise ValueError(f"stem: unknown {kind!r}; expected 'background_subtraction' or 'none'")


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


EMPTY_MASK_PRIOR = 0.5  # pixels of mask mass at the image centre (see TrackReadout.points_from)


class CameraShift(nn.Module):
    """Each frame's whole-pixel shift of the view (a camera's jitter), read off the static background.

    The renderer's camera jitter shifts the whole view of a frame, background and object alike,
    by whole pixels, while the positions to recover are the object's in the world: a track read
    off the image carries the shift (on the seed set about 9 % of frames per axis move by one
    pixel, 0.13 world units at depth 7; half the variance of b1's image-position error). The
    static background says what the shift was: each frame, moved back by each candidate shift
    (du, dv) in [-max_shift, max_shift]^2, is compared (mean absolute difference over the image
    inside the margin) with a reference, and the candidates are weighed by a softmin of that
    difference relative to the best (smooth for the export). The first reference is the clip's
    temporal mean, blurred by the frames that moved; the next (``passes``) is the mean of the
    frames moved back by their estimated shifts. On the seed set's validation clips (jitter
    0.3 pixel, 9 % of frames moved) it gives the true shift on every one of the 3,840 frames;
    at jitter 0.7 (half the frames moved, up to 2 pixels) one pass is up to 0.46 pixel off,
    two at sharpness 30 exact (at 10: 0.12 off). Grey levels on every other row and column are
    enough, and keep it within the noise of a seed-size training step's time (interleaved
    steps, ratio 0.99; 1.10 on every pixel, 1.19 in colour). No parameters; the frames are
    read detached.
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


class DepthCues(nn.Module):
    """Each frame's depth from what the mask says about the sphere, mixed over time.

    The renderer draws the sphere ``sqrt(4 / z)`` times its full colour, whose brightest
    channel is 1 (a saturated, bright hue), Lambertian-shaded with the light behind the
    camera: the brightest pixel under the mask reads ``log z`` to 0.9 % (median, seed set,
    session 5, the b1 model's own mask), against 1.8 % for the depth map's mask-weighted
    mean, but with heavy tails (a sphere behind a distractor, a mask that leaks onto one).
    Per frame this takes four cues, all detached (they are the inputs of a learned
    correction, not something to bend the mask toward): the log of the mask's peak
    brightness (``max m V``, V the brightest colour channel in [0, 1]), the log of its area
    (the size cue, ``z ~ 1 / sqrt(area)``), its mean brightness and the depth map's own
    estimate; a two-layer temporal conv (5 frames: depth changes smoothly, and the frames
    around one whose peak is hidden still show it) reads them into a log-depth offset that starts at
    zero, so an untrained module leaves the depth as it was. Fitted offline on the frozen
    b1 model's cues, this halved the validation depth error (4.7 -> 2.1 % rms); trained end
    to end on the seed profile it took b1's to 3.5 % and its track from 4.7 to 3.6 % of extent.
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


class SphereFit(nn.Module):
    """Each frame's sphere fitted to its pixels: centre (u, v) and depth z by render and compare.

    The renderer's sphere is a known scene model (:mod:`trajlab.data.render`): at depth ``z``
    a disc of radius ``f R / z`` pixels whose every fully covered pixel has, as its brightest
    colour channel (HSV's V; the colour's V is 1 whatever its hue), ``255 sqrt(Z_REF / z)``
    times the Lambertian shade of the sphere's normal there (light from the upper left,
    behind the camera, ambient 0.35), rounded to a byte. Size, brightness and where the
    highlight sits all follow from (u, v, z), so those three are fitted to the V of the
    pixels inside the disc, starting from the track's own estimate: first the best of 45
    nearby starts (the centre moved by up to a pixel, the depth scaled by 0.8-1.25; a
    truncated mean squared residual), then Gauss-Newton steps (Jacobian by finite
    differences, a 3x3 solve in closed form) with robust weights: Huber at 10 grey levels
    for two steps, then Cauchy at 3, so the pixels of a distractor in front of the sphere
    drop out. Only pixels whose coverage is whole count (their value does not depend on the
    unknown background), weighed by a ramp over the disc's last half pixel so that nothing
    is a hard threshold (PyTorch and ONNX Runtime must agree to 1e-4). On the seed set's
    validation frames (bench/bench_sphere_fit.py), started from the renderer's own centre and
    depth, or 0.7 pixel and 10 % of the depth off: depth 0.08 % off (median), centre 0.005
    pixel, on the 99 % of frames it is confident of (the rest: a distractor in front).

    The steps are a ``torch.while_loop`` (two: the Huber steps, then the Cauchy ones), one ONNX
    ``Loop`` each in the export: unrolled, their ten copies made the dynamo export 4-9x slower
    than the model's without the fit (~2x now: b1 at seed size 8.9 -> 16.6 s, bench/bench_sphere_fit.py).

    Each frame's confidence (in [0, 1]) says how much of the disc the fit explains (the
    Cauchy weights' share of the disc: a sphere hidden behind a distractor explains little)
    and whether there were pixels enough; the track takes the fit in that proportion and its
    own estimate in the rest. No parameters; the frames and the starting points are read
    detached.
    ::

        V (N, T, H, W) grey levels, start (u, v, z) (N, T)
          -> a 17 x 17 window around (u, v) (N T, 17, 17)
          -> best of 45 starts -> 10 robust Gauss-Newton steps (float64) -> (u, v, z), confidence (N, T)
    """

    def __init__(
        self,
        *,
        height: int,
        width: int,
        focal_px: float,
        radius: float,
        window: int = 17,
        steps: int = 10,
    ) -> None:
        super().__init__()
        if focal_px <= 0 or radius <= 0:
            raise ValueError(f"sphere fit needs focal_px > 0 and radius > 0, got {focal_px} and {radius}")
        self.height, self.width = int(height), int(width)
        self.focal_px, self.radius = float(focal_px), float(radius)
        self.window, self.steps = int(window), int(steps)
        # Plain floats and small constant tensors (buffers: a tensor made inside the steps' loop body
        # breaks the export): few nodes in the exported graph, whose count sets the export's cost.
        norm = math.sqrt(sum(c * c for c in LIGHT_DIRECTION))
        self.light = tuple(float(c) / norm for c in LIGHT_DIRECTION)
        f64 = torch.float64
        self.register_buffer("span", torch.arange(self.window, dtype=f64), persistent=False)
        steps_px, factors = (-1.0, 0.0, 1.0), (0.8, 0.9, 1.0, 1.1, 1.25)
        starts = [(du, dv, fz) for du in steps_px for dv in steps_px for fz in factors]
        starts_t = torch.tensor(starts, dtype=f64)  # (S, 3): a start = (u + du, v + dv, z fz)
        uv, only_z = torch.tensor([1.0, 1.0, 0.0], dtype=f64), torch.tensor([0.0, 0.0, 1.0], dtype=f64)
        self.register_buffer("start_add", starts_t * uv, persistent=False)
        self.register_buffer("start_mul", starts_t * only_z + uv, persistent=False)
        # Finite differences: the sphere and three copies nudged by h = (0.02, 0.02, 0.002 z) (rows).
        self.register_buffer("nudge", torch.cat([torch.zeros(1, 3), torch.eye(3)]).to(f64), persistent=False)
        self.register_buffer("h_mul", torch.tensor([0.0, 0.0, 0.002], dtype=f64), persistent=False)
        self.register_buffer("h_add", torch.tensor([0.02, 0.02, 0.0], dtype=f64), persistent=False)
        # At most a pixel and a fifth of the depth per step: the limit is p * lim_mul + lim_add.
        self.register_buffer("lim_mul", torch.tensor([0.0, 0.0, 0.2], dtype=f64), persistent=False)
        self.register_buffer("lim_add", torch.tensor([1.0, 1.0, 0.0], dtype=f64), persistent=False)
        self.register_buffer("nxt", torch.tensor([1, 2, 0]), persistent=False)  # i -> i + 1 (mod 3)
        self.register_buffer("aft", torch.tensor([2, 0, 1]), persistent=False)  # i -> i + 2 (mod 3)
        # Levenberg-style damping of the normal equations' diagonal.
        self.register_buffer("damping", torch.ones(3, 3, dtype=f64) + 1e-3 * torch.eye(3, dtype=f64),
                             persistent=False)

    def render(
        self, p: torch.Tensor, px: torch.Tensor, py: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Spheres ``p`` (M, S, 3) = (u, v, z) -> the V of a fully covered pixel centred at
        (px, py) (M, 1, 1, k) and (M, 1, k, 1), and its interior weight (1 inside the disc's
        last pixel, ramping to 0 where the coverage stops being whole): both (M, S, k, k)."""
        u, v, z = p[..., None, None].unbind(2)  # (M, S, 1, 1) each
        lx, ly, lz = self.light
        fr = self.focal_px * self.radius
        r, inv_r = fr / z, z * (1.0 / fr)  # the disc's radius in pixels, and its inverse
        dx, dy = px - u, py - v
        d2 = dx * dx + dy * dy
        # The unit normal: (dx, -dy) / r and nz; the shade is its dot with the light.
        nz = torch.sqrt(torch.clamp(1.0 - d2 * (inv_r * inv_r), min=0.0))
        lam = torch.clamp(dx * (inv_r * lx) + dy * (inv_r * -ly) + nz * lz, min=0.0)
        bright = 255.0 * torch.sqrt(torch.clamp(Z_REF / z, max=1.0))
        value = bright * (AMBIENT + (1.0 - AMBIENT) * lam)
        inside = torch.clamp((2.0 * r - 1.0) - 2.0 * torch.sqrt(d2), min=0.0, max=1.0)
        return value, inside

    def _gauss_newton(
        self,
        p: torch.Tensor,
        obs: torch.Tensor,
        px: torch.Tensor,
        py: torch.Tensor,
        *,
        steps: int,
        huber: bool,
    ) -> torch.Tensor:
        """``steps`` robust Gauss-Newton steps from spheres ``p`` (M, 3) on the window ``obs``
        (M, 1, k, k), as a ``torch.while_loop``: exported as one ONNX Loop, not ``steps`` copies."""
        if steps <= 0:
            return p
        kk = self.window * self.window  # shapes as -1: the loop's body cannot capture the symbolic batch

        def more(i: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return i < steps

        def step(i: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # The sphere and three nudged copies (finite differences): (M, 4, k, k) in one call.
            hstep = p * self.h_mul + self.h_add  # (M, 3)
            pred4, inside4 = self.render(p[:, None] + hstep[:, None] * self.nudge, px, py)
            pred = pred4[:, :1]
            res = obs - pred  # (M, 1, k, k)
            if huber:
                robust = torch.clamp(10.0 / torch.clamp(res.abs(), min=1e-3), max=1.0)  # Huber at 10
            else:
                robust = 1.0 / (1.0 + (res / 3.0) ** 2)  # Cauchy at 3 grey levels
            jac = ((pred4[:, 1:] - pred) / hstep[:, :, None, None]).reshape(-1, 3, kk)
            jw = jac * (inside4[:, :1] * robust).reshape(-1, 1, kk)
            a = (jw @ jac.transpose(1, 2)) * self.damping  # (M, 3, 3), the diagonal damped
            g = (jw * res.reshape(-1, 1, kk)).sum(dim=2)  # (M, 3)
            limit = p * self.lim_mul + self.lim_add
            return i + 1, p + torch.maximum(torch.minimum(_solve3(a, g, self.nxt, self.aft), limit), -limit)

        _, p = torch.while_loop(more, step, (torch.zeros((), dtype=torch.int64, device=p.device), p))
        return p

    def forward(
        self, value: torch.Tensor, u0: torch.Tensor, v0: torch.Tensor, z0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """V (N, T, H, W) in grey levels, a start (u, v, z) (N, T) -> fitted u, v, z, confidence (N, T)."""
        n, t, h, w = value.shape
        k, m = self.window, n * t
        # In float64: in float32 the fit's sums over the window round differently in PyTorch and ONNX
        # Runtime, by up to 6e-5 at the seed b1 model's outputs (the parity gate is 1e-4); 2e-6 in float64.
        frames = value.detach().double().reshape(m, h * w)
        start = torch.stack([u0.detach(), v0.detach(), torch.clamp(z0.detach(), min=0.5)], dim=-1)
        start = start.double().reshape(m, 1, 3)
        # The window: pixel columns and rows around the start, clamped into the image.
        corner = torch.round(start[:, 0, :2] - 0.5) - k // 2  # (M, 2): first column, first row
        cols = torch.clamp(corner[:, :1] + self.span, min=0.0, max=float(w - 1))
        rows = torch.clamp(corner[:, 1:] + self.span, min=0.0, max=float(h - 1))
        index = (rows[:, :, None] * w + cols[:, None, :]).long().reshape(m, k * k)
        obs = torch.gather(frames, 1, index).reshape(m, 1, k, k)
        px = (cols + 0.5)[:, None, None, :]  # (M, 1, 1, k)
        py = (rows + 0.5)[:, None, :, None]  # (M, 1, k, 1)

        # The best start: the truncated mean squared residual over the disc, all starts at once.
        cands = start * self.start_mul + self.start_add  # (M, S, 3)
        pred, inside = self.render(cands, px, py)
        res2 = torch.clamp((obs - pred) ** 2, max=400.0)
        cost = (inside * res2).sum(dim=(2, 3)) / torch.clamp(inside.sum(dim=(2, 3)), min=1.0)  # (M, S)
        best = torch.argmin(cost, dim=1)
        p = torch.gather(cands, 1, best[:, None, None].expand(-1, 1, 3))[:, 0]  # (M, 3)
        # Two Huber steps, then Cauchy; each a loop (one copy of its body in the exported graph).
        huber_steps = min(2, self.steps)
        p = self._gauss_newton(p, obs, px, py, steps=huber_steps, huber=True)
        p = self._gauss_newton(p, obs, px, py, steps=self.steps - huber_steps, huber=False)
        pred, inside = self.render(p[:, None], px, py)
        explained = inside / (1.0 + ((obs - pred) / 3.0) ** 2)
        mass = explained.sum(dim=(1, 2, 3))
        share = mass / torch.clamp(inside.sum(dim=(1, 2, 3)), min=1e-3)
        confidence = torch.clamp((share - 0.6) / 0.2, min=0.0, max=1.0) * torch.clamp(
            (mass - 4.0) / 3.0, min=0.0, max=1.0
        )
        u, v, z = p.float().reshape(n, t, 3).unbind(-1)
        return u, v, z, confidence.reshape(n, t).float()


def _solve3(a: torch.Tensor, g: torch.Tensor, nxt: torch.Tensor, aft: torch.Tensor) -> torch.Tensor:
    """x with a x = g for (M, 3, 3) ``a`` and (M, 3) ``g``, by cofactors (ONNX has no solve).

    With rows a_i, the inverse's columns are the cross products c_i = a_(i+1) x a_(i+2) over
    det = a_0 . c_0; all three at once, as products of permuted copies. ``nxt`` and ``aft``
    are the index tensors (1, 2, 0) and (2, 0, 1) (tensors, not lists: a list index inside a
    ``torch.while_loop`` body fails the ONNX export's decomposition).
    """
    r1, r2 = a.index_select(1, nxt), a.index_select(1, aft)  # rows i + 1 and i + 2
    c = r1.index_select(2, nxt) * r2.index_select(2, aft) - r1.index_select(2, aft) * r2.index_select(2, nxt)
    det = (a[:, 0] * c[:, 0]).sum(dim=1)  # c's row i is c_i
    det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
    return (c * g[:, :, None]).sum(dim=1) / det[:, None]


def motion_features_dim(frames: int) -> int:
    """Width of :func:`motion_features` for ``frames`` points: T offsets, T - 1 steps, T - 2 changes."""
    return 3 * (frames + (frames - 1) + (frames - 2))


def motion_features(
    world: torch.Tensor, offset_scale: torch.Tensor, step_scale: torch.Tensor
) -> torch.Tensor:
    """(N, T, 3) world track -> (N, 3 (3T - 3)): offsets from the last point, steps, step changes.

    Translation-invariant: the shape of the path, not where it is. ``offset_scale`` and
    ``step_scale`` (3,) are the spreads of offsets and steps on the training split.
    """
    n = world.shape[0]
    offsets = (world - world[:, -1:]) / offset_scale
    steps = (world[:, 1:] - world[:, :-1]) / step_scale
    changes = steps[:, 1:] - steps[:, :-1]
    return torch.cat([offsets.reshape(n, -1), steps.reshape(n, -1), changes.reshape(n, -1)], dim=1)


class TrackReadout(nn.Module):
    """Per-frame object track from full-frame-rate features: a soft mask and a depth map.

    Pooled conv features say *what* moves but blur *where*, and the forecast is in
    absolute 3D. The readout predicts, for every frame, a soft mask ``m`` of the moving
    object at the clip's full resolution and a log-depth map ``d``, from the encoder's
    first two conv blocks before time is pooled, the way U-Net/FPN decoders mix a fine
    and a coarse level: a small 3x3x3 conv on block 2 (half resolution; with it a
    receptive field of ~12 pixels and 7 frames, enough to tell the shaded sphere from
    flat distractors and static clutter) gives the coarse mask logits and ``d``, both
    upsampled, and a 1x3x3 conv on block 1 (full resolution) adds the sharp edges. The
    mask's centroid gives the object's image position (a spatial soft-argmax, Levine et
    al., "End-to-End Training of Deep Visuomotor Policies", 2016), the mask-weighted mean
    of ``d`` its depth ``z = z_mean * exp(d)``, and the pinhole camera the rest:
    ``x = z (u - cx) / f``, ``y = -z (v - cy) / f`` (:mod:`trajlab.data.camera`). Depth is
    learned rather than read from the mask's area: the area gives the depth to 0.4 % with
    the true anti-aliased disc, but a learned mask's area is off by 5-10 % (2.5-5 % in
    depth, most of the track's error), while the network can also read the sphere's
    brightness, which falls as ``sqrt(4 / z)``; with ``depth_cues``, :class:`DepthCues`
    corrects each frame's depth from the mask's peak brightness and area, over 5 frames.
    Mask and points are supervised by the observed positions
    (:func:`services.trainer.losses.combined_loss`).

    What the heads get from the track is translation-invariant: every point relative to
    the last one, the per-frame steps and their changes (velocity and acceleration),
    each scaled by its spread on the training split, through a two-layer MLP. Motion
    class and the next positions depend on the shape of the path, not on where it is.
    ::

        block 2 (N, c2, T, H/2, W/2) -> Conv3d 3x3x3 -> ReLU     (N, 16, T, H/2, W/2)
          -> Conv3d 1x3x3 (mask), Conv3d 1x3x3 (log depth) -> upsample x2
        block 1 (N, c1, T, H, W) -> Conv3d 1x3x3 (+ coarse)      mask logits (N, T, H, W)
          -> sigmoid -> centroid (u, v), mean log depth (+ DepthCues)
          -> (x, y, z)                                                 (N, T, 3) world units
          -> [p - p_last, steps, changes of steps] -> MLP              (N, hidden): the track's share
    """

    def __init__(
        self,
        *,
        in_channels: int,
        coarse_channels: int,
        frames: int,
        height: int,
        width: int,
        focal_px: float,
        hidden_dim: int = 256,
        coarse_hidden: int = 16,
        depth_cues: bool = False,
        camera_shift: int = 0,
        sphere_radius: float = 0.0,
    ) -> None:
        """``sphere_radius`` > 0 (world units) fits each frame's sphere to its pixels (SphereFit)."""
        super().__init__()
        if focal_px <= 0:
            raise ValueError(f"track readout needs focal_px > 0, got {focal_px}")
        if height % 2 or width % 2:
            raise ValueError(f"track readout needs an even clip size, got H={height}, W={width}")
        if frames < 3:
            raise ValueError(f"track readout needs at least 3 frames, got {frames}")
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
            SphereFit(height=height, width=width, focal_px=focal_px, radius=sphere_radius)
            if sphere_radius > 0
            else None
        )
        self.height, self.width = int(height), int(width)
        self.focal_px = float(focal_px)
        # The stem's first three channels are the normalised frames (trajlab.preprocess's
        # defaults, which the trainer always uses); their max, un-normalised, is HSV's V in [0, 1].
        self.value_std = float(DEFAULT_STD[0])
        self.value_mean = float(DEFAULT_MEAN[0])
        self.mask = nn.Conv3d(in_channels, 1, (1, 3, 3), padding=(0, 1, 1))
        # Start with an almost empty mask (sigmoid(-4) = 1.8 %): the mask loss only has to
        # switch the object's pixels on.
        nn.init.constant_(self.mask.bias, -4.0)
        f = float(focal_px)
        # Pixel centres in units of the focal length: x / z = (u - cx) / f, y / z = -(v - cy) / f.
        xs = (torch.arange(width, dtype=torch.float32) + 0.5 - width / 2) / f
        ys = -(torch.arange(height, dtype=torch.float32) + 0.5 - height / 2) / f
        self.register_buffer("grid_x", xs.reshape(1, 1, 1, width), persistent=False)
        self.register_buffer("grid_y", ys.reshape(1, 1, height, 1), persistent=False)
        # Normalisation of the points (per axis) and the scales of the motion features,
        # set from the training split (set_stats) and saved with the weights.
        self.register_buffer("mean", torch.zeros(3))
        self.register_buffer("std", torch.ones(3))
        self.register_buffer("offset_scale", torch.ones(3))
        self.register_buffer("step_scale", torch.ones(3))
        in_dim = motion_features_dim(frames)
        self.summary = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
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
        self.offset_scale.copy_((obs - obs[:, -1:]).reshape(-1, 3).std(0).clamp_min(1e-6))
        self.step_scale.copy_((obs[:, 1:] - obs[:, :-1]).reshape(-1, 3).std(0).clamp_min(1e-6))

    def normalise(self, world: torch.Tensor) -> torch.Tensor:
        """(..., 3) world positions -> the units of ``Track.points``."""
        return (world - self.mean) / self.std

    def to_world(self, points: torch.Tensor) -> torch.Tensor:
        """``Track.points`` (..., 3) -> world positions."""
        return points * self.std + self.mean

    def motion_features(self, world: torch.Tensor) -> torch.Tensor:
        """(N, T, 3) world track -> (N, 3 (3T - 3)): offsets from the last point, steps, step changes."""
        return motion_features(world, self.offset_scale, self.step_scale)

    def forward(
        self, fine: torch.Tensor, coarse: torch.Tensor, stem: torch.Tensor | None = None
    ) -> tuple[Track, torch.Tensor]:
        """fine (N, c1, T, H, W) and coarse (N, c2, T, H/2, W/2) features -> track, summary.

        ``stem`` (N, C, T, H, W), the encoder's input, is where the depth cues read the brightness.
        """
        h = self.coarse_body(coarse)
        up = nn.functional.interpolate(
            torch.cat([self.coarse_mask(h), self.coarse_depth(h)], dim=1), scale_factor=(1.0, 2.0, 2.0)
        )  # nearest
        logits = (self.mask(fine) + up[:, :1])[:, 0]  # (N, T, H, W)
        # The mask's sums in float64: a frame whose sphere is hidden has a mask of sigmoid tails
        # (~1e-5 per pixel), whose float32 sums over 4,096 pixels PyTorch and ONNX Runtime round
        # differently enough to fail the export's parity gate (seed b4, session 4: 1.04e-4 in the
        # embedding, with the empty-mask prior). float64 costs little on (N, T, H, W).
        m = torch.sigmoid(logits.double())
        brightness = shift = None
        if self.cues is not None or self.camera_shift is not None or self.sphere_fit is not None:
            if stem is None:
                raise ValueError("this track readout reads the frames (depth cues, camera shift or "
                                 "sphere fit) and needs the stem's output")
            # (N, T, H, W): V in [0, 1]
            brightness = stem[:, :3].amax(dim=1) * self.value_std + self.value_mean
        if self.camera_shift is not None:
            shift = self.camera_shift(stem[:, :3])  # (N, T, 2) pixels
        world = self.points_from(
            m, up[:, 1].double(), brightness if self.cues is not None else None, shift
        ).float()  # (N, T, 3)
        fitted = read = None
        if self.sphere_fit is not None:
            read = self.fit(world, brightness, shift)
            fitted = self.normalise(read)
        track = Track(self.normalise(world), logits, shift, fitted)
        return track, self.summary(self.motion_features(world if read is None else read))

    def fit(self, world: torch.Tensor, brightness: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor:
        """The readout's points (N, T, 3) refined by SphereFit on the frames' V (N, T, H, W) in [0, 1].

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
        return c * fitted + (1.0 - c) * world

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


class TrackClassifier(nn.Module):
    """Motion class from the shape of the track alone; its logits are added to the head's.

    The motion classes are defined by the 3D path, and an MLP on the (predicted) track's
    motion features tells them apart better than the classify head, which reads the pooled
    conv features and overfits them (seed b1, session 5: 99 % train, 90 % validation
    accuracy; an MLP with dropout fitted offline on the same model's tracks: 96 %, the two
    summed 94-96 %; in training, seed profile, b1 went from 90 to 96 %; bench/RESULTS.md).
    It reads the track detached, so the track stays
    supervised by the positions only, and has its own cross-entropy
    (:func:`services.trainer.losses.combined_loss`), so it learns to classify on its own
    however confident the head becomes on the training split. In training it also scores
    the time-reversed track (every motion class run backwards is the same class: a line,
    circle, helix, or a parabola under the same gravity), which doubles what it sees.
    ::

        motion features (N, 3 (3T - 3)) -> Linear -> ReLU -> Dropout
          -> Linear -> ReLU -> Dropout -> Linear                  logits (N, K)
    """

    def __init__(self, *, frames: int, num_classes: int, hidden_dim: int = 256, dropout: float = 0.3) -> None:
        super().__init__()
        in_dim = motion_features_dim(frames)
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


class I3DEncoder(nn.Module):
    """Three Conv3d-BN-ReLU blocks with 3D max pooling, adaptive average pooling, linear to D."""

    def __init__(
        self,
        blocks: nn.Sequential,
        pool: nn.Module,
        proj: nn.Linear,
        track: TrackReadout | None = None,
    ) -> None:
        super().__init__()
        self.blocks = blocks
        self.pool = pool
        self.proj = proj
        self.track = track
        # Keeps the 512 features at unit scale whatever the grid size, so the heads'
        # first steps do not blow up the loss (seen as a CE spike without it).
        self.norm = nn.LayerNorm(proj.out_features)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Track | None]:
        """(N, C, T, H, W) -> features (N, D) and, with the track readout, the track."""
        first = self.blocks[0](x)  # (N, c1, T, H, W): block 1's conv, full resolution
        second = self.blocks[1:3](first)  # (N, c2, T, H/2, W/2): block 2 before time is pooled
        pooled = torch.flatten(self.pool(self.blocks[3:](second)), 1)
        track = None
        if self.track is not None:
            track, summary = self.track(first, second, x)
            pooled = torch.cat([pooled, summary], dim=1)
        return self.norm(self.proj(pooled)), track


def create_i3d_encoder(
    *,
    in_channels: int = 3,
    channels: Sequence[int] = (16, 32, 64),
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    pool_grid: Sequence[int] = (4, 4, 4),
    feature_dim: int = FEATURE_DIM,
    track: bool = False,
    focal_px: float = 0.0,
    depth_cues: bool = False,
    camera_shift: int = 0,
    sphere_radius: float = 0.0,
) -> I3DEncoder:
    """I3D-like 3D CNN (after Carreira & Zisserman, "Quo Vadis, Action Recognition?", CVPR 2017).

    Inflated 3x3x3 convolutions; like I3D the first pooling keeps the time axis so
    early motion is not averaged away. The final adaptive average pool keeps a
    small (T', H', W') grid rather than one vector, because the forecast head must
    read *where* and *when* the object is, which a global average erases. With
    ``track`` the :class:`TrackReadout` reads blocks 1 and 2's convs (before time is pooled).
    ::

        clip (N, C, T, H, W)
          -> Conv3d 3x3x3 -> BN -> ReLU -> MaxPool (1,2,2)    (N, c1, T,   H/2, W/2)
          -> Conv3d 3x3x3 -> BN -> ReLU -> MaxPool (2,2,2)    (N, c2, T/2, H/4, W/4)
          -> Conv3d 3x3x3 -> BN -> ReLU -> MaxPool (2,2,2)    (N, c3, T/4, H/8, W/8)
          -> adaptive average pool to pool_grid               (N, c3, t', h', w')
          -> flatten [++ track summary] -> Linear -> LayerNorm (N, feature_dim)
    """
    if len(channels) != 3:
        raise ValueError(f"channels must have 3 entries (one per block), got {list(channels)}")
    if frames < 4 or height < 8 or width < 8:
        raise ValueError(f"clip too small for three pooling stages: T={frames}, H={height}, W={width}")
    c1, c2, c3 = channels
    blocks = nn.Sequential(
        _conv_bn_relu(in_channels, c1),
        nn.MaxPool3d((1, 2, 2)),
        _conv_bn_relu(c1, c2),
        nn.MaxPool3d((2, 2, 2)),
        _conv_bn_relu(c2, c3),
        nn.MaxPool3d((2, 2, 2)),
    )
    available = (frames // 4, height // 8, width // 8)
    grid = _grid(pool_grid, available)
    pool = _adaptive_avg_pool(available, grid)
    tr = _track_readout(
        track, c1, c2, frames, height, width, focal_px, depth_cues, camera_shift, sphere_radius
    )
    extra = tr.out_features if tr is not None else 0
    proj = nn.Linear(c3 * grid[0] * grid[1] * grid[2] + extra, feature_dim)
    return I3DEncoder(blocks, pool, proj, tr)


def _track_readout(
    track: bool,
    fine_channels: int,
    coarse_channels: int,
    frames: int,
    height: int,
    width: int,
    focal_px: float,
    depth_cues: bool,
    camera_shift: int = 0,
    sphere_radius: float = 0.0,
) -> TrackReadout | None:
    if not track:
        return None
    return TrackReadout(
        depth_cues=depth_cues,
        camera_shift=camera_shift,
        sphere_radius=sphere_radius,
        in_channels=fine_channels,
        coarse_channels=coarse_channels,
        frames=frames,
        height=height,
        width=width,
        focal_px=focal_px,
    )


def _grid(wanted: Sequence[int], available: tuple[int, int, int]) -> tuple[int, int, int]:
    # Never ask the pool for more cells than the feature map has (that would
    # upsample) and use divisors, so every cell averages the same number of inputs.
    out = []
    for w, a in zip(wanted, available, strict=True):
        g = max(1, min(int(w), a))
        while a % g:
            g -= 1
        out.append(g)
    return out[0], out[1], out[2]


def _adaptive_avg_pool(available: tuple[int, int, int], grid: tuple[int, int, int]) -> nn.AvgPool3d:
    """Adaptive average pooling to ``grid`` for a known input size ``available``.

    The input size of a branch model is fixed (metadata records it), so the adaptive
    pool is computed here as the equivalent fixed AvgPool3d: identical numbers, and
    it exports to ONNX, which has no adaptive 3D pooling operator.
    """
    kernel = tuple(a // g for a, g in zip(available, grid, strict=True))
    return nn.AvgPool3d(kernel, stride=kernel)


class DualPathwayEncoder(nn.Module):
    """Motion pathway (every frame, full resolution) + context pathway (sparse frames, low resolution)."""

    def __init__(
        self,
        *,
        motion_stages: nn.ModuleList,
        context_stages: nn.ModuleList,
        laterals: nn.ModuleList,
        alpha: int,
        motion_pool: nn.Module,
        context_pool: nn.Module,
        proj: nn.Linear,
        track: TrackReadout | None = None,
    ) -> None:
        super().__init__()
        self.track = track
        self.motion_stages = motion_stages
        self.context_stages = context_stages
        self.laterals = laterals
        self.alpha = alpha
        self.motion_pool = motion_pool
        self.context_pool = context_pool
        self.proj = proj
        self.norm = nn.LayerNorm(proj.out_features)  # as in I3DEncoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Track | None]:
        """(N, C, T, H, W) -> features (N, D) and, with the track readout, the track."""
        motion = x
        # Every alpha-th frame at half resolution: the cheap view of the scene.
        context = nn.functional.avg_pool3d(x[:, :, :: self.alpha], kernel_size=(1, 2, 2))
        # Motion stages 1 and 2's convs before pooling (for the track): full and half resolution.
        convs: list[torch.Tensor] = []
        for i, (m_stage, c_stage, lateral) in enumerate(
            zip(self.motion_stages, self.context_stages, self.laterals, strict=True)
        ):
            if i < 2 and self.track is not None:
                conv = m_stage[0](motion)
                convs.append(conv)
                motion = m_stage[1:](conv)
            else:
                motion = m_stage(motion)
            context = c_stage(context)
            # Lateral fusion: time-strided conv brings motion features to the context rate.
            context = torch.cat([context, lateral(motion)], dim=1)
        parts = [torch.flatten(self.motion_pool(motion), 1), torch.flatten(self.context_pool(context), 1)]
        track = None
        if self.track is not None:
            track, summary = self.track(convs[0], convs[1], x)
            parts.append(summary)
        return self.norm(self.proj(torch.cat(parts, dim=1))), track


def create_dual_pathway_encoder(
    *,
    in_channels: int = 3,
    channels: Sequence[int] = (16, 32, 64),
    motion_channel_ratio: int = 2,
    alpha: int = 4,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    pool_grid: Sequence[int] = (4, 4, 4),
    feature_dim: int = FEATURE_DIM,
    track: bool = False,
    focal_px: float = 0.0,
    depth_cues: bool = False,
    camera_shift: int = 0,
    sphere_radius: float = 0.0,
) -> DualPathwayEncoder:
    """Dual-pathway (SlowFast-like) encoder (after Feichtenhofer et al., "SlowFast Networks", ICCV 2019).

    The *motion pathway* sees every frame at full resolution with thin channels
    (``channels // motion_channel_ratio``) and never pools time, so it keeps fast
    motion; the *context pathway* sees every ``alpha``-th frame at half resolution
    with wide channels. After each stage a lateral Conv3d (kernel 5x1x1, time stride
    ``alpha``) carries motion features into the context pathway (concatenated).
    Both pathways are pooled to a small grid, concatenated and projected. With ``track``
    the :class:`TrackReadout` reads the motion pathway's stage-1 and stage-2 convs (every frame).
    ::

        clip (N, C, T, H, W)
          motion:  (N, C, T, H, W)                  context: (N, C, T/a, H/2, W/2)
          stage 1: conv -> (N, m1, T, H/2, W/2)     conv -> (N, c1, T/a, H/2, W/2) ++ lateral(2*m1)
          stage 2: conv -> (N, m2, T, H/4, W/4)     conv+pool -> (N, c2, T/a, H/4, W/4) ++ lateral(2*m2)
          stage 3: conv -> (N, m3, T, H/8, W/8)     conv+pool -> (N, c3, T/a, H/8, W/8) ++ lateral(2*m3)
          pool to grid, flatten, concatenate -> Linear -> LayerNorm -> (N, feature_dim)
    """
    if len(channels) != 3:
        raise ValueError(f"channels must have 3 entries (one per stage), got {list(channels)}")
    if alpha < 1 or frames < alpha:
        raise ValueError(f"alpha must be in [1, frames]; got alpha={alpha}, frames={frames}")
    if height < 16 or width < 16:
        raise ValueError(f"clip too small for the dual pathway: H={height}, W={width} (need >= 16)")
    m_ch = [max(4, c // motion_channel_ratio) for c in channels]
    motion_stages = nn.ModuleList()
    context_stages = nn.ModuleList()
    laterals = nn.ModuleList()
    m_in, c_in = in_channels, in_channels
    for i in range(3):
        motion_stages.append(nn.Sequential(_conv_bn_relu(m_in, m_ch[i]), nn.MaxPool3d((1, 2, 2))))
        # The context pathway starts at half resolution, so it pools from stage 2 on.
        c_layers: list[nn.Module] = [_conv_bn_relu(c_in, channels[i])]
        if i > 0:
            c_layers.append(nn.MaxPool3d((1, 2, 2)))
        context_stages.append(nn.Sequential(*c_layers))
        laterals.append(
            nn.Sequential(
                nn.Conv3d(
                    m_ch[i], 2 * m_ch[i], (5, 1, 1), stride=(alpha, 1, 1), padding=(2, 0, 0), bias=False
                ),
                nn.BatchNorm3d(2 * m_ch[i]),
                nn.ReLU(inplace=True),
            )
        )
        m_in = m_ch[i]
        c_in = channels[i] + 2 * m_ch[i]
    context_frames = -(-frames // alpha)
    m_avail = (frames, height // 8, width // 8)
    c_avail = (context_frames, height // 8, width // 8)
    m_grid = _grid(pool_grid, m_avail)
    c_grid = _grid(pool_grid, c_avail)
    m_feat = m_ch[2] * m_grid[0] * m_grid[1] * m_grid[2]
    # Reads the motion pathway, the one that keeps every frame.
    tr = _track_readout(
        track, m_ch[0], m_ch[1], frames, height, width, focal_px, depth_cues, camera_shift, sphere_radius
    )
    c_feat = c_in * c_grid[0] * c_grid[1] * c_grid[2]
    return DualPathwayEncoder(
        motion_stages=motion_stages,
        context_stages=context_stages,
        laterals=laterals,
        alpha=alpha,
        motion_pool=_adaptive_avg_pool(m_avail, m_grid),
        context_pool=_adaptive_avg_pool(c_avail, c_grid),
        proj=nn.Linear(m_feat + c_feat + (tr.out_features if tr is not None else 0), feature_dim),
        track=tr,
    )


class CompressionAutoencoder(nn.Module):
    """512 -> 256 -> 128 -> 256 -> 512; returns (code, reconstruction)."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encoder(features)
        return code, self.decoder(code)


def create_compression_autoencoder(
    *, feature_dim: int = FEATURE_DIM, hidden_dim: int = 256, code_dim: int = CODE_DIM
) -> CompressionAutoencoder:
    """Feature compression (MAGVIT-like bottleneck): the heads read the compact code.

    Trained with a reconstruction loss (MSE of the reconstruction against the encoder
    features) next to the task losses.
    ::

        features (N, 512) -> Linear+ReLU (N, 256) -> Linear (N, 128) = code
        code (N, 128) -> Linear+ReLU (N, 256) -> Linear (N, 512) = reconstruction
    """
    enc = nn.Sequential(
        nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, code_dim)
    )
    dec = nn.Sequential(
        nn.Linear(code_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, feature_dim)
    )
    return CompressionAutoencoder(enc, dec)


class TextAlignment(nn.Module):
    """Projects video features into a text-embedding space; logits against class descriptions."""

    def __init__(self, proj: nn.Linear, class_text: torch.Tensor, init_temperature: float) -> None:
        super().__init__()
        self.proj = proj
        # Unit-norm embeddings of the class descriptions, computed once by the text encoder.
        self.register_buffer("class_text", nn.functional.normalize(class_text, dim=-1))
        # CLIP's learnable log inverse temperature.
        self.logit_scale = nn.Parameter(torch.tensor(float(torch.log(torch.tensor(1.0 / init_temperature)))))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = nn.functional.normalize(self.proj(features), dim=-1)
        scale = self.logit_scale.clamp(max=4.6052).exp()  # cap at 100 as CLIP does
        return z, scale * z @ self.class_text.t()


def create_text_alignment(
    *, feature_dim: int = FEATURE_DIM, class_text: torch.Tensor, init_temperature: float = 0.07
) -> TextAlignment:
    """CLIP-style alignment (after Radford et al., "Learning Transferable Visual Models", 2021).

    ``class_text`` (K, D) are the text encoder's embeddings of the K class
    descriptions. The loss is CLIP's InfoNCE with the class descriptions as the
    candidate texts; zero-shot classification is the nearest description.
    ::

        features (N, 512) -> Linear -> L2-normalise = z (N, D)
        logits = exp(logit_scale) * z @ normalise(class_text).T     (N, K)
    """
    if class_text.ndim != 2:
        raise ValueError(f"class_text must be (K, D), got {tuple(class_text.shape)}")
    return TextAlignment(nn.Linear(feature_dim, class_text.shape[1]), class_text.float(), init_temperature)


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


def linear_extrapolation(frames: int, horizon: int, window: int = 4) -> torch.Tensor:
    """(horizon, frames) matrix: least-squares line through the last ``window`` frames, evaluated at T..T+h-1.

    Constant velocity estimated from the latest frames (a straight line through a few
    points, so one noisy point moves it less than the last step would). Frame units.
    """
    window = max(2, min(window, frames))
    k = torch.arange(frames + horizon, dtype=torch.float64)
    v = torch.stack([torch.ones_like(k), k], dim=1)  # (T + h, 2)
    out = torch.zeros(horizon, frames, dtype=torch.float64)
    out[:, frames - window :] = v[frames:] @ torch.linalg.pinv(v[frames - window : frames])
    return out.float()


class ClassGatedExtrapolation(nn.Module):
    """Per-class linear forecasters of the track, mixed by the predicted class probabilities.

    Each motion class ``k`` has its own affine map from the track's offsets to the last
    point, ``w_t - w_T`` for all T frames and 3 axes, to the next frames' offsets:
    ``prior_k = w_T + A_k vec(w - w_T) + b_k``, the classic linear predictor of a time
    series, one per kind of motion (a line for linear motion, a parabola with its gravity
    in the bias, a fixed-frequency recurrence for circles). The prior is
    ``sum_k p_k prior_k`` with ``p`` the classifier's probabilities (detached: the
    classifier learns from its own loss only), and the forecast head adds its correction.
    Every ``A_k`` starts as constant velocity through the last ``window`` points
    (:func:`linear_extrapolation`), so an untrained model forecasts like the old prior.

    Why: on the seed set (session 4, b3's epoch-30 track), one ridge regression per class
    from the track to the future, mixed by the model's own probabilities, forecast the
    validation split 8.9 % of extent off where the heads reading the pooled features
    (with the constant-velocity prior) were 13.5 % off: the direct linear path from the
    track to the forecast was missing.
    """

    def __init__(self, *, frames: int, horizon: int, num_classes: int, window: int = 4) -> None:
        super().__init__()
        cv = torch.kron(linear_extrapolation(frames, horizon, window), torch.eye(3))  # (3h, 3T)
        self.horizon = horizon
        self.weight = nn.Parameter(cv.expand(num_classes, -1, -1).clone())  # (K, 3h, 3T)
        self.bias = nn.Parameter(torch.zeros(num_classes, 3 * horizon))  # (K, 3h)

    def forward(self, world: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units, class probabilities (N, K) -> (N, horizon, 3) world units."""
        n = world.shape[0]
        last = world[:, -1:]  # (N, 1, 3)
        offsets = (world - last).reshape(n, -1)  # (N, 3T)
        per_class = torch.einsum("ni,koi->nko", offsets, self.weight) + self.bias  # (N, K, 3h)
        mixed = torch.einsum("nk,nko->no", probs, per_class)  # (N, 3h)
        return mixed.reshape(n, self.horizon, 3) + last


# The angular rate each motion class's path has to be searched for (ParametricExtrapolation).
_PERIODIC = {"linear": False, "parabolic": False, "circular": True, "helical": True}


def _family_basis(name: str, t: torch.Tensor, w: float = 0.0) -> torch.Tensor:
    """(len(t), p) basis of ``name``'s path per axis at times ``t`` (frames), angular rate ``w`` rad/frame."""
    one = torch.ones_like(t)
    if name == "linear":
        cols = [one, t]
    elif name == "parabolic":
        cols = [one, t, t * t]
    elif name == "circular":
        cols = [one, torch.cos(w * t), torch.sin(w * t)]
    else:  # helical
        cols = [one, t, torch.cos(w * t), torch.sin(w * t)]
    return torch.stack(cols, dim=1)


class ParametricExtrapolation(nn.Module):
    """Per-class least-squares fits of the class's own kind of path to the track, extrapolated.

    Each motion class is a family of paths linear in a few coefficients per axis: a line
    (``a + b t``), a parabola (``a + b t + c t^2``), a circle (``a + b cos wt + c sin wt``)
    and a helix (the circle plus ``d t``), the last two for an angular rate ``w`` searched
    on a log-spaced grid of ``grid`` rates, given as the angle swept from the clip's first
    frame to its last forecast one (``sweep_range``, radians; the generator's circles sweep
    1.25-2.5 pi and its helices 2-4 pi, for any fps: trajlab.data.trajectories). For a
    fixed basis, the fit to the T observed points and its value at the next ``horizon``
    frames are fixed linear maps of the track (``B_obs pinv(B_obs)`` and
    ``B_next pinv(B_obs)``), precomputed here. The forward pass scores every candidate by
    its residual, weighs the candidates of each class by a softmin of the residual
    relative to the class's best (``sharpness``; smooth, so PyTorch and ONNX Runtime
    agree, and as sharp as an argmin on a clean track), and mixes the classes'
    extrapolations by the class probabilities. No parameters.

    Why: the track is noisy (3.3 % of extent for seed b1, mostly depth, frame to frame),
    and a fit of the right family over all 16 frames averages that noise where the
    per-class affine maps (:class:`ClassGatedExtrapolation`) cannot express a circle of
    unknown rate. On the seed b1 model's own validation tracks (session 6), its forecast
    is 6.0 % of extent off mixed by the model's probabilities (5.6 % with the true class),
    against 7.7 % for per-class affine maps fitted to the same tracks; on true tracks
    0.25 %, the grid's spacing.

    Robust re-fits (``refits``): some frames of a track are far off (a sphere behind a
    distractor, a mask that leaks onto one: 2 % of seed b1's frames are > 10 % off in depth),
    and least squares lets each pull the whole fit. Each re-fit is one step of Huber's
    M-estimator in its pseudo-observation form: every point's residual to the current fit is
    clipped to the fit's rms residual (per candidate), the clipped points are fitted again
    with the same fixed maps, so the step stays a few tensor products (exported as they are).
    On the session 7 seed models' validation tracks, three re-fits took the forecast with the
    true class from 5.40 to 4.81 % of extent (b1; b3 5.86 -> 5.26), and mixed by the models'
    probabilities from 5.89 to 5.39 % (b3 6.81 -> 6.24); more re-fits gained nothing, a clip
    at 1.5 rms or a median scale did less (bench/RESULTS.md). 0.4 % of a seed-size step.
    ::

        track (N, T, 3) -> offsets from the last point
          -> residual of every candidate fit (N, G, T, 3) [-> clip at rms, re-fit] x refits
          -> squared residual (N, G); softmin within each class (N, K, G)
          -> extrapolations (N, K, horizon, 3) -> mixed by p (N, K)    prior (N, horizon, 3)
    """

    def __init__(
        self,
        *,
        frames: int,
        horizon: int,
        classes: Sequence[str] = CLASS_NAMES,
        sweep_range: tuple[float, float] = (0.5 * math.pi, 6.0 * math.pi),
        grid: int = 320,
        sharpness: float = 50.0,
        refits: int = 0,
    ) -> None:
        super().__init__()
        if refits < 0:
            raise ValueError(f"parametric forecast prior: refits must be >= 0, got {refits}")
        unknown = [c for c in classes if c not in _PERIODIC]
        if unknown:
            raise ValueError(f"parametric forecast prior: no family for classes {unknown}")
        lo, hi = sweep_range
        if not 0 < lo < hi:
            raise ValueError(f"parametric forecast prior: sweep_range must be 0 < lo < hi, got {sweep_range}")
        t = torch.arange(frames + horizon, dtype=torch.float64) - (frames - 1)  # 0 at the last observed frame
        span = frames + horizon - 1  # frames from the first to the last of the clip
        omegas = torch.exp(torch.linspace(math.log(lo), math.log(hi), grid, dtype=torch.float64)) / span
        residual, extrapolate, owner = [], [], []
        for k, name in enumerate(classes):
            for w in omegas.tolist() if _PERIODIC[name] else [0.0]:
                basis = _family_basis(name, t, w)
                pinv = torch.linalg.pinv(basis[:frames])  # (p, T)
                residual.append(torch.eye(frames, dtype=torch.float64) - basis[:frames] @ pinv)
                extrapolate.append(basis[frames:] @ pinv)
                owner.append(k)
        owner_t = torch.tensor(owner)
        self.horizon = horizon
        self.sharpness = float(sharpness)
        self.refits = int(refits)
        self.register_buffer("residual", torch.stack(residual).float(), persistent=False)  # (G, T, T)
        self.register_buffer("extrapolate", torch.stack(extrapolate).float(), persistent=False)  # (G, h, T)
        member = owner_t[None, :] == torch.arange(len(classes))[:, None]  # (K, G)
        self.register_buffer("member", member, persistent=False)

    def per_class(self, world: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units -> each class's best-fit extrapolation (N, K, horizon, 3)."""
        last = world[:, -1:]  # (N, 1, 3)
        offsets = world - last
        points = offsets[:, None]  # (N, 1, T, 3): what each candidate fits, the same track at first
        resid = torch.einsum("gst,nta->ngsa", self.residual, offsets)  # (N, G, T, 3): points - fit
        for _ in range(self.refits):
            dist = resid.square().sum(dim=3, keepdim=True)  # (N, G, T, 1) squared distance to the fit
            rms = dist.mean(dim=2, keepdim=True)
            # Huber's pseudo-observations: fit + residual clipped to the rms (kept within it).
            keep = torch.clamp(((rms + 1e-12) / (dist + 1e-12)).sqrt(), max=1.0)
            points = points - resid * (1.0 - keep)
            resid = torch.einsum("gst,ngta->ngsa", self.residual, points)
        res = resid.square().sum(dim=(2, 3))  # (N, G)
        # Relative to each class's best fit: scale-free, and a clean track (best ~0) picks its best.
        big = torch.finfo(res.dtype).max
        best = torch.where(self.member[None], res[:, None], big).amin(dim=2, keepdim=True)  # (N, K, 1)
        score = -self.sharpness * res[:, None] / (best + 1e-9)
        weights = torch.softmax(torch.where(self.member[None], score, -big), dim=2)  # (N, K, G)
        if self.refits:
            fits = torch.einsum("ght,ngta->ngha", self.extrapolate, points)  # (N, G, h, 3)
        else:
            fits = torch.einsum("ght,nta->ngha", self.extrapolate, offsets)
        return torch.einsum("nkg,ngha->nkha", weights, fits) + last[:, None]

    def forward(self, world: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Track (N, T, 3) world units, class probabilities (N, K) -> (N, horizon, 3) world units."""
        return torch.einsum("nk,nkha->nha", probs, self.per_class(world))


class BranchOutput(NamedTuple):
    logits: torch.Tensor  # (N, K)
    forecast: torch.Tensor  # (N, horizon, 3), normalised by the dataset statistics
    embedding: torch.Tensor  # (N, D): what the model exports as its embedding
    features: torch.Tensor  # (N, 512) encoder features
    reconstruction: torch.Tensor | None  # (N, 512), compression only
    text_logits: torch.Tensor | None  # (N, K), text alignment only
    track: Track | None = None  # the observed track, with the track readout only
    track_logits: torch.Tensor | None = None  # (N, K) the track classifier's share of ``logits``
    reversed_track_logits: torch.Tensor | None = None  # (N, K) on the time-reversed track; training only
    # (2N, K) on the observed positions with another clip's track error, then reversed; training
    # with ``observed`` only (see borrowed_track_error)
    noisy_track_logits: torch.Tensor | None = None


def borrowed_track_error(track: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """True positions (N, T, 3) plus the track's error (N, T, 3) of another clip in the batch.

    What the track classifier meets on validation clips is the readout's track, whose error
    (a per-clip depth scale and per-frame jitter, mostly in depth) is larger there than on the
    training clips it fits. Learning also on the true positions with an error borrowed from a
    random other clip (a fresh pairing each step, the error taken relative to that clip's depth
    and scaled to this one's, since it grows with depth) shows it many more noisy versions of
    each path than the 960 it would otherwise see (offline, on the frozen seed b1 model's
    tracks, 30 epochs: 0.946-0.958 -> 0.962-0.967 validation accuracy; bench/RESULTS.md).
    Draws from torch's global generator, seeded per epoch like the rest of training.
    """
    depth = observed[..., 2:3].clamp_min(1e-3)
    relative = (track - observed) / depth
    return observed + relative[torch.randperm(len(track), device=track.device)] * depth


class BranchModel(nn.Module):
    """Encoder x enhancement x heads; forecast statistics live in buffers so export can undo them."""

    def __init__(
        self,
        args: ModelArgs,
        encoder: nn.Module,
        heads: nn.ModuleDict,
        compression: CompressionAutoencoder | None = None,
        alignment: TextAlignment | None = None,
        stem: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.args = args
        self.stem = stem if stem is not None else nn.Identity()
        self.encoder = encoder
        self.heads = heads
        self.compression = compression
        self.alignment = alignment
        # Forecast targets are (world - mean) / std per (step, axis); set from the
        # training split before training and saved with the weights.
        self.register_buffer("forecast_mean", torch.zeros(args.horizon, 3))
        self.register_buffer("forecast_std", torch.ones(args.horizon, 3))
        self.extrapolate: ClassGatedExtrapolation | ParametricExtrapolation | None = None
        if args.track:
            # With a track the forecast head predicts a correction to a prior read straight
            # off the track, mixed by the class probabilities: each class's kind of path fitted
            # to the whole track ("parametric"), or one learned affine map per class, each
            # starting as constant velocity through the last 4 points ("affine"). (One
            # quadratic through the whole track for every class fits circles and helices badly:
            # 27 % of extent off on the seed set's true tracks, against 9 % for constant velocity.)
            if args.forecast_prior == "parametric":
                self.extrapolate = ParametricExtrapolation(
                    frames=args.frames,
                    horizon=args.horizon,
                    classes=CLASS_NAMES[: args.num_classes],
                    refits=args.prior_refits,
                )
            elif args.forecast_prior == "affine":
                self.extrapolate = ClassGatedExtrapolation(
                    frames=args.frames, horizon=args.horizon, num_classes=args.num_classes
                )
            else:
                raise ValueError(
                    f"forecast_prior: unknown {args.forecast_prior!r}; expected 'parametric' or 'affine'"
                )
        self.track_classifier: TrackClassifier | None = None
        if args.track and args.track_classifier:
            self.track_classifier = TrackClassifier(frames=args.frames, num_classes=args.num_classes)

    def set_forecast_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.forecast_mean.copy_(mean.reshape(self.args.horizon, 3))
        self.forecast_std.copy_(std.reshape(self.args.horizon, 3).clamp_min(1e-6))

    def set_track_stats(self, observed: torch.Tensor) -> None:
        """Statistics of the training split's observed positions (N, T, 3) for the track readout."""
        if getattr(self.encoder, "track", None) is not None:
            self.encoder.track.set_stats(observed)

    def forward(self, clip: torch.Tensor, observed: torch.Tensor | None = None) -> BranchOutput:
        """``observed`` (N, T, 3), the clips' true positions, only in training: with the track
        classifier it also learns on them with another clip's track error (noisy_track_logits)."""
        features, track = self.encoder(self.stem(clip))
        head_in = features
        recon = text_logits = None
        embedding = features
        if self.compression is not None:
            head_in, recon = self.compression(features)
            embedding = head_in
        if self.alignment is not None:
            embedding, text_logits = self.alignment(features)
        logits = self.heads["classify"](head_in)
        forecast = self.heads["forecast"](head_in).reshape(-1, self.args.horizon, 3)
        track_logits = reversed_logits = noisy_logits = None
        if track is not None:
            # What the heads read: the fitted points when the sphere is fitted, else the readout's.
            world = self.encoder.track.to_world(track.points if track.fitted is None else track.fitted)
            if self.track_classifier is not None:
                shape = world.detach()
                track_logits = self.track_classifier(self.encoder.track.motion_features(shape))
                logits = logits + track_logits
                if self.training:
                    reversed_logits = self.track_classifier(self.encoder.track.motion_features(shape.flip(1)))
                    if observed is not None:
                        noisy = borrowed_track_error(shape, observed.to(shape.dtype))
                        both_ways = torch.cat([noisy, noisy.flip(1)])
                        noisy_logits = self.track_classifier(self.encoder.track.motion_features(both_ways))
            if self.extrapolate is not None:
                prior = self.extrapolate(world, torch.softmax(logits.detach(), dim=-1))  # (N, horizon, 3)
                forecast = forecast + (prior - self.forecast_mean) / self.forecast_std
        return BranchOutput(
            logits, forecast, embedding, features, recon, text_logits, track, track_logits,
            reversed_track_logits=reversed_logits, noisy_track_logits=noisy_logits,
        )

    def to_world(self, forecast_normalised: torch.Tensor) -> torch.Tensor:
        return forecast_normalised * self.forecast_std + self.forecast_mean

    @property
    def embedding_dim(self) -> int:
        if self.compression is not None:
            return CODE_DIM
        if self.alignment is not None:
            return int(self.alignment.class_text.shape[1])
        return self.args.feature_dim


class ExportWrapper(nn.Module):
    """What goes into ONNX: clip -> (probabilities, forecast in world units, embedding)."""

    def __init__(self, model: BranchModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(clip)
        return torch.softmax(out.logits, dim=-1), self.model.to_world(out.forecast), out.embedding


def create_branch_model(args: ModelArgs, *, class_text: torch.Tensor | None = None) -> BranchModel:
    """Build a branch model from its :class:`ModelArgs`.

    ``class_text`` (K, D) is required for the text-alignment enhancement (and may be
    a zero tensor of the right shape when the weights are about to be loaded from a
    checkpoint, whose buffer holds the real embeddings).
    """
    stem, stem_channels = create_stem(
        kind=args.stem, in_channels=args.in_channels, height=args.height, width=args.width
    )
    common = dict(
        in_channels=stem_channels,
        channels=args.channels,
        frames=args.frames,
        height=args.height,
        width=args.width,
        pool_grid=args.pool_grid,
        feature_dim=args.feature_dim,
        track=args.track,
        focal_px=args.focal_px,
        depth_cues=args.depth_cues,
        camera_shift=args.camera_shift if args.track else 0,
        sphere_radius=args.object_radius if args.track and args.sphere_fit else 0.0,
    )
    encoder: nn.Module
    if args.encoder == "i3d":
        encoder = create_i3d_encoder(**common)  # type: ignore[arg-type]
    elif args.encoder == "dual_pathway":
        encoder = create_dual_pathway_encoder(
            alpha=args.alpha,
            motion_channel_ratio=args.motion_channel_ratio,
            **common,  # type: ignore[arg-type]
        )
    else:
        raise ValueError(f"encoder: unknown {args.encoder!r}; expected 'i3d' or 'dual_pathway'")
    compression = alignment = None
    head_dim = args.feature_dim
    if args.enhancement == "compression":
        compression = create_compression_autoencoder(feature_dim=args.feature_dim)
        head_dim = CODE_DIM
    elif args.enhancement == "text_alignment":
        if class_text is None:
            if args.text_dim <= 0:
                raise ValueError("text_alignment needs class_text (K, D) or text_dim > 0")
            class_text = torch.zeros(args.num_classes, args.text_dim)
        if class_text.shape[0] != args.num_classes:
            raise ValueError(f"class_text has {class_text.shape[0]} rows, expected {args.num_classes}")
        alignment = create_text_alignment(feature_dim=args.feature_dim, class_text=class_text)
    elif args.enhancement != "none":
        raise ValueError(
            f"enhancement: unknown {args.enhancement!r}; expected 'compression', 'text_alignment' or 'none'"
        )
    heads = create_heads(in_dim=head_dim, num_classes=args.num_classes, horizon=args.horizon)
    return BranchModel(args, encoder, heads, compression, alignment, stem)


# Thin presets: the four seed branches of DESIGN.md.
def _preset(encoder: str, enhancement: str, **kw: Any) -> ModelArgs:
    base: dict[str, Any] = dict(frames=16, height=64, width=64, horizon=4)
    base.update(kw)
    return ModelArgs(encoder=encoder, enhancement=enhancement, **base)


def create_b1(**kw: Any) -> BranchModel:
    """b1: I3D-like encoder + feature compression."""
    return create_branch_model(_preset("i3d", "compression", **kw))


def create_b2(**kw: Any) -> BranchModel:
    """b2: dual-pathway encoder + feature compression."""
    return create_branch_model(_preset("dual_pathway", "compression", **kw))


def create_b3(*, class_text: torch.Tensor, **kw: Any) -> BranchModel:
    """b3: I3D-like encoder + CLIP-style text alignment."""
    args = _preset("i3d", "text_alignment", text_dim=int(class_text.shape[1]), **kw)
    return create_branch_model(args, class_text=class_text)


def create_b4(**kw: Any) -> BranchModel:
    """b4: dual-pathway encoder, no enhancement."""
    return create_branch_model(_preset("dual_pathway", "none", **kw))


PRESETS = {"b1": create_b1, "b2": create_b2, "b3": create_b3, "b4": create_b4}


def set_conv_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """Conv3d weights in channels_last_3d (NDHWC) or back to contiguous, in place; returns the model.

    On CPU, oneDNN's 3D convolutions in channels_last_3d took about half the CPU time of the
    contiguous layout for these models (bench/RESULTS.md). Only the 5-D conv weights change
    layout; values, state_dict and ONNX export are the same either way.
    """
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    for mod in model.modules():
        if isinstance(mod, nn.Conv3d):
            mod.to(memory_format=fmt)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

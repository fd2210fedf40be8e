"""What perception and the heads could reach at best, measured apart from the video models.

Two questions behind the trainer's track readout (bench/RESULTS.md, session 3):

1. Perception: given the sphere's TRUE anti-aliased disc in each frame (the mask the readout
   is trained towards), how well do its area and the sphere's brightness give the depth?
2. Heads: given the TRUE observed 3D track (perfect perception, or with Gaussian noise of a
   few % of the extent), how well does an MLP classify the motion and forecast the next
   frames, on raw positions versus translation-invariant features (offsets from the last
   point, steps, step changes, the model's TrackShape) with the model's
   prior (ClassGatedExtrapolation: per-class linear forecasters mixed by the class
   probabilities, each starting as constant velocity)?

Runs on a built dataset (default: the seed profile's, built if missing, ~10 s):

    .venv/bin/python bench/track_ceiling.py [--data data/seed] [--epochs 150] [--noise 0 0.02]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from services.trainer.forecast_priors import ClassGatedExtrapolation, linear_extrapolation
from services.trainer.losses import disc_masks
from services.trainer.perception.motion import motion_features
from trajlab.data.build import build_dataset
from trajlab.data.dataset import Split, load_dataset
from trajlab.profiles import load_profile


def _pct(pred: np.ndarray, true: np.ndarray, extent: np.ndarray) -> float:
    """Mean per-clip MAE as % of the clip's extent (the trainer's forecast_mae_pct)."""
    return float((np.abs(pred - true).mean(axis=(1, 2)) / extent).mean() * 100.0)


def perception(split: Split, focal: float, radius: float, n: int) -> None:
    clips = np.asarray(split.clips[:n], dtype=np.float32)  # (N, T, H, W, 3)
    obs = split.observed[:n].astype(np.float64)
    ext = split.extent[:n]
    _, _, h, w, _ = clips.shape
    m = disc_masks(torch.from_numpy(obs), height=h, width=w, focal_px=focal, radius=radius).numpy()
    area = m.sum(axis=(2, 3))
    u = (m * (np.arange(w) + 0.5)).sum(axis=(2, 3)) / area
    v = (m * (np.arange(h) + 0.5)[:, None]).sum(axis=(2, 3)) / area
    z_true = obs[..., 2]
    value = clips.max(axis=-1)  # brightest channel
    inside = m >= 1.0
    mean_v = (value * inside).sum(axis=(2, 3)) / np.maximum(inside.sum(axis=(2, 3)), 1)
    peak_v = (value * inside).reshape(*inside.shape[:2], -1).max(axis=-1)
    full = 255.0 * np.sqrt(4.0 / z_true)  # the renderer's brightness at depth z (z >= 4)
    depths = {
        "true depth": z_true,
        "disc area (f R / sqrt(A / pi))": focal * radius / np.sqrt(area / math.pi),
        "mean brightness inside the disc": 4.0 * (np.median(mean_v / full) * 255.0 / mean_v) ** 2,
        "brightest pixel of the disc": 4.0 * (np.median(peak_v / full) * 255.0 / peak_v) ** 2,
    }
    print(f"perception from the true disc ({n} validation clips):")
    for name, z in depths.items():
        p = np.stack([(u - w / 2) * z / focal, -(v - h / 2) * z / focal, z], axis=-1)
        rel = float(np.abs(z / z_true - 1).mean() * 100)
        print(
            f"  depth from {name:34s} depth off {rel:5.2f} %   track MAE {_pct(p, obs, ext):5.2f} % of extent"
        )


class _Heads(nn.Module):
    def __init__(self, frames: int, horizon: int, invariant: bool, train_obs: torch.Tensor) -> None:
        super().__init__()
        self.frames, self.horizon, self.invariant = frames, horizon, invariant
        flat = train_obs.reshape(-1, 3)
        self.register_buffer("mean", flat.mean(0))
        self.register_buffer("std", flat.std(0))
        self.register_buffer("off", (train_obs - train_obs[:, -1:]).reshape(-1, 3).std(0))
        self.register_buffer("step", (train_obs[:, 1:] - train_obs[:, :-1]).reshape(-1, 3).std(0))
        # The model's own prior: per-class linear forecasters mixed by the class probabilities.
        self.prior = ClassGatedExtrapolation(frames=frames, horizon=horizon, num_classes=4)
        d = 3 * (3 * frames - 3) if invariant else 3 * frames
        self.body = nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.classify = nn.Linear(256, 4)
        self.forecast = nn.Linear(256, horizon * 3)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(obs)
        if self.invariant:
            # The same features as the model's track readout (its TrackShape).
            h = self.body(motion_features(obs, self.off, self.step))
            logits = self.classify(h)
            base = self.prior(obs, torch.softmax(logits.detach(), dim=-1))
        else:
            h = self.body(((obs - self.mean) / self.std).reshape(n, -1))
            logits = self.classify(h)
            base = self.mean.expand(n, self.horizon, 3)
        return logits, base + self.forecast(h).reshape(n, self.horizon, 3) * self.std


def heads(
    train: Split, val: Split, epochs: int, noise: float, invariant: bool, seed: int = 0
) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    def arrays(s: Split) -> tuple[torch.Tensor, ...]:
        obs = torch.from_numpy(s.observed.astype(np.float32))
        ext = torch.from_numpy(s.extent.astype(np.float32))
        if noise:
            obs = obs + noise * ext[:, None, None] * torch.randn(obs.shape, generator=g)
        return obs, torch.from_numpy(s.future.astype(np.float32)), torch.from_numpy(s.labels), ext

    tr, va = arrays(train), arrays(val)
    model = _Heads(train.frames, tr[1].shape[1], invariant, tr[0])
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    steps = epochs * math.ceil(len(tr[0]) / 16)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(tr[0]), generator=g)
        for i in range(0, len(perm), 16):
            idx = perm[i : i + 16]
            logits, fc = model(tr[0][idx])
            loss = F.cross_entropy(logits, tr[2][idx]) + F.smooth_l1_loss(
                fc / model.std, tr[1][idx] / model.std
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        logits, fc = model(va[0])
    acc = float((logits.argmax(1) == va[2]).float().mean())
    return acc, _pct(fc.numpy(), va[1].numpy(), va[3].numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/seed"))
    ap.add_argument("--profile", default="seed")
    ap.add_argument("--clips", type=int, default=200, help="validation clips for the perception part")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument(
        "--noise", type=float, nargs="*", default=[0.0, 0.02], help="track noise, fraction of extent"
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    prof = load_profile(a.profile)
    if not (a.data / "manifest.json").exists():
        build_dataset(prof.dataset, a.data)
    ds = load_dataset(a.data, prof.dataset, verify=False)
    cfg = ds.config
    focal = (cfg.width / 2) / math.tan(math.radians(cfg.fov_degrees) / 2)
    perception(ds.val, focal, cfg.sphere_radius, a.clips)
    tr, va = ds.train, ds.val
    cv = np.einsum("ft,nti->nfi", linear_extrapolation(tr.frames, va.future.shape[1]).numpy(), va.observed)
    last2 = (
        va.observed[:, -1:]
        + (va.observed[:, -1:] - va.observed[:, -2:-1]) * np.arange(1, va.future.shape[1] + 1)[None, :, None]
    )
    print(
        f"constant velocity on the true tracks: from the last 2 points {_pct(last2, va.future, va.extent):.2f} %, "
        f"from a line through the last 4 {_pct(cv, va.future, va.extent):.2f} % of extent"
    )
    print(f"heads on the true observed track ({len(tr)} train / {len(va)} val clips, {a.epochs} epochs):")
    for noise in a.noise:
        for invariant in (False, True):
            acc, mae = heads(tr, va, a.epochs, noise, invariant)
            feats = "offsets/steps/changes + gated prior" if invariant else "raw normalised positions"
            print(
                f"  noise {noise * 100:4.1f} % of extent, {feats:34s} accuracy {acc:.3f}   forecast MAE {mae:5.2f} %"
            )


if __name__ == "__main__":
    main()

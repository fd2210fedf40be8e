"""How well and at what cost the trainer's SphereFit reads each frame's sphere (bench/RESULTS.md, session 9).

1. Accuracy: the seed set's validation clips are rendered again with the renderer's own record
   of where it drew the sphere (centre with the camera's jitter, depth); the fit is started
   from that, moved by N(0, sigma) pixels and N(0, s) of the depth, and scored on depth
   (relative) and centre (pixels), on the frames it is confident of and blended with the start
   on the rest (as the track does).
2. Cost: a seed-size training step (b1, batch 16, one thread) with and without the fit,
   interleaved, as a ratio taken in one run; then the ONNX export of each (the fit's steps
   are a loop, one ONNX Loop: unrolled, ten copies made the export 4-9x slower).

    .venv/bin/python bench/bench_sphere_fit.py [--data data/seed] [--clips 240] [--steps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from services.trainer.branch import create_branch_model
from services.trainer.export import export_onnx
from services.trainer.losses import track_classifier_noise
from services.trainer.model_args import ModelArgs
from services.trainer.perception.sphere_fit import SphereFit
from trajlab.data.build import _sample_rng, build_dataset
from trajlab.data.camera import Camera
from trajlab.data.dataset import load_dataset
from trajlab.data.render import RenderSettings, render_clip
from trajlab.data.trajectories import TrajectoryGenerator
from trajlab.preprocess import to_model_input
from trajlab.profiles import CLASS_NAMES, load_profile


def truth(data: Path, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation clips (n, T, H, W, 3), the renderer's centres (n, T, 2) and depths (n, T)."""
    cfg = load_profile("seed").dataset
    val = load_dataset(data).split("val")
    gen = TrajectoryGenerator.from_config(cfg)
    settings = RenderSettings.from_config(cfg)
    centres = []
    for k in range(n):
        i = int(val.sample_ids[k])
        rng = _sample_rng(cfg.seed, i)  # the dataset's per-sample generator: same path, same scene
        path = gen.sample(i % len(CLASS_NAMES), rng).positions[: cfg.frames]
        clip, info = render_clip(path, settings, rng)
        if not np.array_equal(clip, val.clips[k]):
            raise SystemExit(f"clip {k} does not render as stored: is {data} the seed profile's dataset?")
        centres.append(info.centers)
    return np.asarray(val.clips[:n]), np.stack(centres), np.asarray(val.observed[:n, :, 2])


def accuracy(clips: np.ndarray, centres: np.ndarray, depth: np.ndarray) -> None:
    cfg = load_profile("seed").dataset
    camera = Camera(cfg.width, cfg.height, cfg.fov_degrees)
    fit = SphereFit(height=cfg.height, width=cfg.width, focal_px=camera.focal_px, radius=cfg.sphere_radius)
    value = torch.from_numpy(clips.max(axis=-1).astype(np.float32))
    cu, cv = (torch.from_numpy(centres[..., i]).float() for i in range(2))
    z = torch.from_numpy(depth).float()
    g = torch.Generator().manual_seed(0)
    print(f"{len(clips) * clips.shape[1]} frames")
    print("start sigma (px), s | confident | depth err median / p99 (%) | centre err median / p99 (px) "
          "| blended depth rms (%) | start depth rms (%)")
    for sigma, s in ((0.0, 0.0), (0.5, 0.05), (0.7, 0.1), (1.0, 0.15)):
        noise = torch.randn(3, *z.shape, generator=g)
        z0 = z * (1 + s * noise[2])
        u, v, zf, conf = fit(value, cu + sigma * noise[0], cv + sigma * noise[1], z0)
        sure = conf > 0.99
        dz = (zf / z - 1).abs()[sure] * 100
        dc = torch.hypot(u - cu, v - cv)[sure]
        blended = ((conf * zf + (1 - conf) * z0) / z - 1) * 100
        start = (z0 / z - 1) * 100
        print(
            f"{sigma:.1f}, {s:.2f} | {float(sure.float().mean()):.4f} | {float(dz.median()):.3f} / "
            f"{float(dz.quantile(0.99)):.3f} | {float(dc.median()):.4f} / {float(dc.quantile(0.99)):.3f} | "
            f"{float(blended.pow(2).mean().sqrt()):.3f} | {float(start.pow(2).mean().sqrt()):.3f}"
        )


def cost(data: Path, steps: int) -> None:
    cfg = load_profile("seed")
    d, mc, t = cfg.dataset, cfg.model, cfg.training
    train = load_dataset(data).split("train")
    args = ModelArgs(
        encoder="i3d", enhancement="compression", frames=d.frames, height=d.height, width=d.width,
        horizon=d.horizon, encoder_args=mc.encoder_args, track=True, depth_cues=True, track_classifier=True,
        forecast_prior="parametric", prior_refits=mc.prior_refits, camera_shift=mc.camera_shift,
        focal_px=Camera(d.width, d.height, d.fov_degrees).focal_px, object_radius=d.sphere_radius,
    )
    observed = torch.from_numpy(np.asarray(train.observed[:256]))
    models = {}
    for fit in (False, True):
        m = create_branch_model(dataclasses.replace(args, sphere_fit=fit)).train()
        m.set_track_stats(observed)
        models[fit] = m
    x = torch.from_numpy(to_model_input(np.asarray(train.clips[: t.batch_size])))
    obs = observed[: t.batch_size]
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps + 1):  # the first round warms up
        for fit, m in models.items():
            m.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            out = m(x)
            noisy = track_classifier_noise(m, out, obs)  # the loss's training-only input, as in training
            (out.logits.sum() + out.forecast.sum() + out.track.points.sum() + noisy.sum()).backward()
            times[fit].append(time.perf_counter() - t0)
    off, on = (float(np.median(times[k][1:])) for k in (False, True))
    print(f"training step (b1, batch {t.batch_size}, 1 thread): without the fit {off:.3f} s, with {on:.3f} s, "
          f"ratio {on / off:.3f}")
    # The ONNX export (dynamo, as the trainer runs it), each model once, one after the other.
    took = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fit, m in models.items():
            m.eval()
            t0 = time.perf_counter()
            export_onnx(m, Path(tmp) / f"fit{int(fit)}.onnx", x[:2])
            took[fit] = time.perf_counter() - t0
    print(f"ONNX export (b1, seed size, 1 thread): without the fit {took[False]:.1f} s, with {took[True]:.1f} s, "
          f"ratio {took[True] / took[False]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("data/seed"))
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    build_dataset(load_profile("seed").dataset, a.data)
    accuracy(*truth(a.data, a.clips))
    cost(a.data, a.steps)


if __name__ == "__main__":
    main()

"""Training throughput (clips/s) per encoder, and what channels_last_3d, threads, the track readout
and torch.compile change.

One run, ratios against the baseline of the same encoder and clip size (eager, contiguous
layout, one thread, track readout on: what a trainer of `trajlab run` looked like before
channels_last), so machine load that affects every variant alike cancels out; the CPU
milliseconds per clip are the load-independent figure. A training step is forward +
combined loss (with the track terms) + backward + Adam step at batch 16 on random clips.

    .venv/bin/python bench/bench_trainer.py [--size quick|seed|both] [--steps N] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from services.trainer.branch import create_branch_model, set_conv_memory_format
from services.trainer.losses import combined_loss, track_target
from services.trainer.model_args import ModelArgs
from trajlab.data.camera import Camera

SIZES = {"quick": (16, 32, 32), "seed": (16, 64, 64)}
BATCH = 16


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def measure(
    encoder: str,
    size: tuple[int, int, int],
    *,
    channels: tuple[int, int, int],
    threads: int,
    channels_last: bool = False,
    track: bool = True,
    compile_model: bool = False,
    steps: int = 6,
    warmup: int = 2,
) -> tuple[float, float]:
    """(clips per second wall, CPU seconds per clip) of training steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    t, h, w = size
    args = ModelArgs(
        encoder=encoder,
        enhancement="compression",
        frames=t,
        height=h,
        width=w,
        horizon=4,
        encoder_args={"channels": channels},
        track=track,
        focal_px=Camera(w, h).focal_px if track else 0.0,
        object_radius=0.45 if track else 0.0,
    )
    model = set_conv_memory_format(create_branch_model(args), channels_last)
    x = torch.randn(BATCH, 3, t, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 4, (BATCH,))
    target = torch.randn(BATCH, 4, 3)
    observed = torch.stack(
        [torch.rand(BATCH, t) * 2 - 1, torch.rand(BATCH, t) * 2 - 1, 4 + 6 * torch.rand(BATCH, t)], -1
    )
    track_t = track_target(model, observed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compile_model else model

    def step() -> None:
        out = fwd(x)
        loss, _ = combined_loss(out, y, target, forecast_weight=1.0, aux_weight=0.1, track=track_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    c0, t0 = _cpu_seconds(), time.perf_counter()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    return steps * BATCH / wall, cpu / (steps * BATCH)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", choices=["quick", "seed", "both"], default="both")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    sizes = ["quick", "seed"] if a.size == "both" else [a.size]
    channels = {"quick": (8, 16, 32), "seed": (8, 16, 32)}  # the profiles' widths
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, batch {BATCH}, {a.steps} timed steps after warm-up"
    )
    for size in sizes:
        for enc in ("i3d", "dual_pathway"):
            kw = dict(channels=channels[size], steps=a.steps)
            base, base_cpu = measure(enc, SIZES[size], threads=1, **kw)  # type: ignore[arg-type]
            print(
                f"\n[{size} {SIZES[size]} channels {channels[size]}] {enc}: eager, contiguous, 1 thread: "
                f"{base:.1f} clips/s ({base_cpu * 1000:.1f} CPU-ms/clip)"
            )
            variants = [
                ("channels_last_3d, 1 thread", dict(threads=1, channels_last=True)),
                ("channels_last_3d, no track", dict(threads=1, channels_last=True, track=False)),
                ("contiguous, 2 threads", dict(threads=2)),
                ("channels_last_3d, 2 threads", dict(threads=2, channels_last=True)),
            ]
            if not a.no_compile:
                variants.append(("torch.compile, 1 thread", dict(threads=1, compile_model=True)))
            for name, extra in variants:
                try:
                    cps, cpu = measure(enc, SIZES[size], **kw, **extra)  # type: ignore[arg-type]
                except Exception as exc:  # torch.compile needs a working C++ toolchain
                    print(f"  {name:30s} failed: {type(exc).__name__}: {str(exc)[:120]}")
                    continue
                print(
                    f"  {name:30s} {cps:7.1f} clips/s  ratio vs baseline: {cps / base:4.2f}x  "
                    f"({cpu * 1000:.1f} CPU-ms/clip)"
                )


if __name__ == "__main__":
    main()

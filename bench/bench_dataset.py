"""Benchmark: build the seed dataset from the CLI, and the renderer against a full-frame render.

1. ``trajlab dataset build --profile seed`` as a subprocess into a temp dir, start-up
   included (the issue's target: <= 3 s for 1,200 clips of 16x64x64x3 on 2 cores);
   prints wall time, clips/s and the child's CPU seconds (on a shared machine the CPU
   time says what the wall time cannot).
2. The renderer, in this process, on the same seed scenes: bounding-box rasterising
   (``render_batch``, what the build uses) vs the straightforward full-frame vectorised
   render (``render_clip_fullframe``: every object evaluated over every pixel of every
   frame, one clip at a time; same bytes), measured in the same run, as a ratio.

Usage: ``.venv/bin/python bench/bench_dataset.py [--profile seed] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("trajlab")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "trajlab_cli"]


def bench_cli_build(profile: str, workers: int | None) -> tuple[float, float, int, str]:
    """(wall s, child CPU s, clips, summary line) of one cold build into a fresh temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="trajlab-bench-"))
    try:
        cmd = [*_cli(), "dataset", "build", "--profile", profile, "--out", str(tmp / "ds"), "--no-progress"]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        clips = int(out.stdout.split("built ")[1].split(" clips")[0])
        return wall, cpu, clips, out.stdout.strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_renderer(profile: str, n: int) -> tuple[float, float, float]:
    """Seconds per clip: batched bbox, per-clip bbox, per-clip full frame (same scenes, same bytes)."""
    from trajlab.data import RenderSettings, TrajectoryGenerator, render_batch, render_clip
    from trajlab.data.render import render_clip_fullframe
    from trajlab.profiles import load_profile

    cfg = load_profile(profile).dataset
    gen = TrajectoryGenerator.from_config(cfg)
    settings = RenderSettings.from_config(cfg)
    pos = np.stack([gen.sample(i % 4, np.random.default_rng(i)).positions[: cfg.frames] for i in range(n)])
    out = np.zeros((n, cfg.frames, cfg.height, cfg.width, 3), dtype=np.uint8)  # pages touched up front

    def rngs() -> list[np.random.Generator]:
        return [np.random.default_rng(10_000 + i) for i in range(n)]

    r = rngs()
    t0 = time.perf_counter()
    for s in range(0, n, 48):
        render_batch(pos[s : s + 48], settings, r[s : s + 48], out[s : s + 48])
    batch = (time.perf_counter() - t0) / n
    ref_batch = out.copy()

    r = rngs()
    t0 = time.perf_counter()
    for i in range(n):
        render_clip(pos[i], settings, r[i], out[i])
    single = (time.perf_counter() - t0) / n

    r = rngs()
    t0 = time.perf_counter()
    for i in range(n):
        render_clip_fullframe(pos[i], settings, r[i], out[i])
    full = (time.perf_counter() - t0) / n
    if not np.array_equal(out, ref_batch):
        raise SystemExit("full-frame and bbox renders differ: the comparison is void")
    return batch, single, full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="seed")
    ap.add_argument(
        "--repeat", type=int, default=2, help="cold builds to time (the best and all are printed)"
    )
    ap.add_argument("--render-clips", type=int, default=240, help="clips for the renderer comparison")
    args = ap.parse_args()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (shared with other work)")
    walls = []
    for k in range(args.repeat):
        wall, cpu, clips, line = bench_cli_build(args.profile, None)
        walls.append(wall)
        print(
            f"cli build #{k + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU, {clips / wall:.0f} clips/s (start-up included)"
        )
        print(f"  {line}")
    wall1, cpu1, clips1, _ = bench_cli_build(args.profile, 1)
    print(f"cli build, 1 worker: {wall1:.2f} s wall, {cpu1:.2f} s CPU, {clips1 / wall1:.0f} clips/s")
    best = min(walls)
    print(f"BEST cli build ({args.profile}): {best:.2f} s, {clips1 / best:.0f} clips/s; target <= 3 s")

    batch, single, full = bench_renderer(args.profile, args.render_clips)
    print(
        f"renderer, ms per clip: bbox batched {batch * 1e3:.2f}, bbox one clip at a time {single * 1e3:.2f}, "
        f"full-frame one clip at a time {full * 1e3:.2f}"
    )
    print(
        f"RATIO full-frame / bbox batched = {full / batch:.1f}x; full-frame / bbox per clip = {full / single:.1f}x "
        f"(same bytes)"
    )


if __name__ == "__main__":
    main()

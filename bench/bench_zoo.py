"""Zoo benchmark: every registered encoder at the quick and seed clip sizes, one run, ratios.

Per encoder and size: training clips/s and CPU-ms per clip (encoder + a linear head,
Adam, cross-entropy; batch ``--batch``), batch-1 latency in PyTorch eager and in ONNX
Runtime (the encoder alone, exported as ``trajlab zoo`` exports it), parameters and
forward FLOPs per clip. Ratios are against the first seed encoder registered (``i3d``),
else ``r3d``, measured in the same run. The encoder's input has 9 channels, what the
branch model's default stem (background subtraction) gives it.

    .venv/bin/python bench/bench_zoo.py [--threads 1] [--steps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from services.trainer import zoo  # noqa: E402
from trajlab.profiles import load_profile  # noqa: E402

IN_CHANNELS = 9


def train_rate(enc: torch.nn.Module, size: zoo.InputSize, batch: int, steps: int) -> tuple[float, float]:
    """(clips/s wall, CPU-ms per clip) of training steps after one warm-up step."""
    head = torch.nn.Linear(enc.out_dim, 4)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-3)
    clips, labels = zoo.example_clip(size, batch=batch), torch.arange(batch) % 4
    enc.train()

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(head(enc(clips).pooled), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    enc.eval()
    return batch * steps / wall, 1000 * cpu / (batch * steps)


def latency_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def onnx_vs_eager(enc: zoo.VideoEncoder, size: zoo.InputSize, threads: int, repeats: int) -> tuple[float, float]:
    """(eager ms, ONNX Runtime ms) at batch 1, medians."""
    import onnxruntime as ort

    x = zoo.example_clip(size, batch=1)
    with torch.no_grad():
        eager = latency_ms(lambda: enc(x), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = zoo.export_encoder(enc, Path(tmp) / "enc.onnx", size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {"clip": x.numpy()}
        runtime = latency_ms(lambda: sess.run(None, feed), repeats)
    return eager, runtime


def measure(name: str, size: zoo.InputSize, args: argparse.Namespace) -> dict[str, Any]:
    enc = zoo.build(name, size)
    clips_s, cpu_ms = train_rate(enc, size, args.batch, args.steps)
    eager, runtime = onnx_vs_eager(enc, size, args.threads, args.repeats)
    return {
        "encoder": name, "origin": zoo.origin_of(zoo.ENCODERS.get(name)), "size": str(size),
        "params": sum(p.numel() for p in enc.parameters()), "gflops": zoo.count_flops(enc, size) / 1e9,
        "train_clips_s": clips_s, "train_cpu_ms_per_clip": cpu_ms, "eager_ms": eager, "ort_ms": runtime,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--profiles", default="quick,seed")
    p.add_argument("--encoders", default="", help="comma-separated; default: all registered")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    registry = zoo.load_encoders()
    names = args.encoders.split(",") if args.encoders else registry.names()
    ref = next((n for n in (*zoo.SEED_ENCODERS, "r3d") if n in registry), names[0])
    names = [ref, *(n for n in names if n != ref)]
    load_start = os.getloadavg()
    print(f"reference: {ref}; threads {args.threads}; batch {args.batch}; load average {load_start}")
    rows = []
    for profile in args.profiles.split(","):
        size = zoo.input_size_for(load_profile(profile), in_channels=IN_CHANNELS)
        base = None
        for name in names:
            r = measure(name, size, args) | {"profile": profile}
            base = base or r
            r["ratio_train_clips_s"] = r["train_clips_s"] / base["train_clips_s"]
            r["ratio_cpu_ms"] = r["train_cpu_ms_per_clip"] / base["train_cpu_ms_per_clip"]
            r["ratio_gflops"] = r["gflops"] / base["gflops"] if base["gflops"] else float("nan")
            r["ort_over_eager"] = r["ort_ms"] / r["eager_ms"]
            rows.append(r)
            print(f"{profile:5s} {name:12s} {r['params'] / 1e6:6.2f}M {r['gflops']:6.3f} GFLOP  "
                  f"train {r['train_clips_s']:6.1f} clips/s {r['train_cpu_ms_per_clip']:7.1f} CPU-ms/clip  "
                  f"eager {r['eager_ms']:7.2f} ms  ORT {r['ort_ms']:7.2f} ms  (ORT/eager {r['ort_over_eager']:.2f}; "
                  f"vs {ref}: train x{r['ratio_train_clips_s']:.2f}, CPU x{r['ratio_cpu_ms']:.2f}, "
                  f"FLOPs x{r['ratio_gflops']:.2f})", flush=True)
    load_end = os.getloadavg()
    print(f"load average at the end: {load_end}")
    if args.json:
        args.json.write_text(json.dumps({"reference": ref, "load_start": load_start, "load_end": load_end,
                                         "threads": args.threads, "batch": args.batch, "rows": rows},
                                        indent=2))


if __name__ == "__main__":
    main()

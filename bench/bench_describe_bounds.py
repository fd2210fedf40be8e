"""Describe's work bound: peak memory and time of one analytic Describe by point count.

The describer accepts at most ``MAX_POINTS`` observed points per request (issue 23: an
unbounded 100,000-point request took 10 s and 1.3 GB). This measures one call of the
analytic backend (the fit of every family, the choice, equations and description: the
work a Describe does) at a small size, at the limit and, for the record, beyond it (what
the limit now refuses), in this process with one BLAS thread:

    .venv/bin/python bench/bench_describe_bounds.py [--reps 3] [--beyond 20000]

Peak memory is ``tracemalloc``'s peak over the call (numpy reports its buffers to it; LAPACK
scratch allocated outside numpy is not counted). Prints each size's median time and
peak, and the ratios to the small request, one run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

from services.describer.backends.analytic import AnalyticBackend  # noqa: E402
from services.describer.backends.base import Trajectory  # noqa: E402
from services.describer.servicer import MAX_POINTS  # noqa: E402


def helix(n: int) -> Trajectory:
    """A noisy helix sampled at 8 fps (the periodic families are the fit's costly part)."""
    rng = np.random.default_rng(0)
    t = np.arange(n) / 8.0
    p = np.stack([np.cos(t), np.sin(t), 0.1 * t], axis=1) + rng.normal(scale=0.01, size=(n, 3))
    return Trajectory(p, t)


def measure(n: int, reps: int) -> tuple[float, float]:
    """(median seconds, largest peak MiB) of one analytic describe of n points."""
    backend = AnalyticBackend()
    traj = helix(n)
    backend.describe(traj)  # warm-up: imports, caches
    times, peaks = [], []
    for _ in range(reps):
        tracemalloc.start()
        t0 = time.perf_counter()
        backend.describe(traj)
        times.append(time.perf_counter() - t0)
        peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    return statistics.median(times), max(peaks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--beyond", type=int, default=20_000, help="a size past the limit (0 = skip)")
    args = ap.parse_args()
    sizes = [16, 256, MAX_POINTS] + ([args.beyond] if args.beyond else [])
    rows = [(n, *measure(n, args.reps)) for n in sizes]
    base_t, base_m = rows[0][1], rows[0][2]
    print(f"{'points':>8} {'time ms':>9} {'peak MiB':>9} {'time x':>8} {'mem x':>8}")
    for n, sec, mib in rows:
        note = "  (refused now)" if n > MAX_POINTS else ("  (the limit)" if n == MAX_POINTS else "")
        print(f"{n:>8} {sec * 1e3:>9.1f} {mib:>9.1f} {sec / base_t:>8.1f} {mib / base_m:>8.1f}{note}")


if __name__ == "__main__":
    main()

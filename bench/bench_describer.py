"""Describer benchmark: analytic Describe latency on one core, and the service's overhead.

Trajectories: 10 per class from trajlab.data.TrajectoryGenerator (16 observed frames at
8 fps, the seed dataset's shape). Everything runs pinned to ONE core with one BLAS
thread: the benchmark process (direct calls and the gRPC client) and the service
(``python -m services.describer``, a separate process as deployed) share that core.

    .venv/bin/python bench/bench_describer.py [--reps 5] [--core 0] [--json out.json]

Prints p50/p90 per trajectory for (a) the analytic backend called directly (fit, choose,
write equations and description), (b) Describe over gRPC to the service, and the
ratio b/a (the overhead the service adds), one run. Target: (a) p50 <= 20 ms.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread, set before numpy loads: "one core" must mean one.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def trajectories(per_class: int = 10) -> list[tuple[np.ndarray, np.ndarray, str]]:
    from trajlab.data import TrajectoryGenerator

    gen = TrajectoryGenerator()
    rng = np.random.default_rng(2024)
    out = []
    for i in range(4 * per_class):
        tr = gen.sample(i % 4, rng)
        out.append((tr.times[: gen.frames], tr.positions[: gen.frames], tr.kind))
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="calls per trajectory")
    ap.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.core})

    from services.describer.backends.analytic import AnalyticBackend
    from services.describer.backends.base import Trajectory
    from trajlab.clients.describer import DescriberClient

    data = trajectories()
    backend = AnalyticBackend()
    for t, p, _ in data[:8]:  # warm up imports and caches
        backend.describe(Trajectory(p, t))

    direct: list[float] = []
    direct_cpu: list[float] = []
    per_class: dict[str, list[float]] = {}
    for _ in range(args.reps):
        for t, p, kind in data:
            t0, c0 = time.perf_counter(), time.thread_time()
            backend.describe(Trajectory(p, t))
            dt = (time.perf_counter() - t0) * 1000
            direct_cpu.append((time.thread_time() - c0) * 1000)
            direct.append(dt)
            per_class.setdefault(kind, []).append(dt)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
    # Port 0: the service logs the port it bound (at INFO), which is parsed below.
    env.update(
        {
            "TRAJLAB_DESCRIBER_PORT": "0",
            "TRAJLAB_DESCRIBER_METRICS_PORT": "-1",
            "TRAJLAB_DESCRIBER_LOG_LEVEL": "INFO",
        }
    )
    proc = subprocess.Popen(
        ["taskset", "-c", str(args.core), sys.executable, "-m", "services.describer"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    port = None
    try:
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line and proc.poll() is not None:
                break
            m = re.search(r"describer serving on [\d.]+:(\d+)", line)
            if m:
                port = int(m.group(1))
        if port is None:
            print("the service did not start", file=sys.stderr)
            return 1
        served: list[float] = []
        with DescriberClient(f"127.0.0.1:{port}", timeout=30) as client:
            for t, p, _ in data[:8]:
                client.describe(p, t, backend="analytic")
            server_cpu0, client_cpu0 = proc_cpu_seconds(proc.pid), time.process_time()
            for _ in range(args.reps):
                for t, p, _kind in data:
                    t0 = time.perf_counter()
                    client.describe(p, t, backend="analytic")
                    served.append((time.perf_counter() - t0) * 1000)
            # CPU per call: the server's (all its threads) plus this process's (client side).
            server_cpu_ms = (proc_cpu_seconds(proc.pid) - server_cpu0) * 1000 / len(served)
            client_cpu_ms = (time.process_time() - client_cpu0) * 1000 / len(served)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    res = {
        "trajectories": len(data),
        "calls_each": len(direct),
        "direct_p50_ms": pct(direct, 50),
        "direct_p90_ms": pct(direct, 90),
        "direct_p50_ms_by_class": {k: pct(v, 50) for k, v in sorted(per_class.items())},
        "direct_cpu_mean_ms": float(np.mean(direct_cpu)),
        "direct_cpu_p50_ms": pct(direct_cpu, 50),
        "service_cpu_mean_ms": server_cpu_ms + client_cpu_ms,
        "service_server_cpu_mean_ms": server_cpu_ms,
        "service_p50_ms": pct(served, 50),
        "service_p90_ms": pct(served, 90),
    }
    res["service_over_direct_p50"] = res["service_p50_ms"] / res["direct_p50_ms"]
    res["service_overhead_p50_ms"] = res["service_p50_ms"] - res["direct_p50_ms"]
    res["service_over_direct_cpu"] = res["service_cpu_mean_ms"] / res["direct_cpu_mean_ms"]
    print(
        f"analytic Describe, {len(data)} dataset trajectories x {args.reps}, pinned to core {args.core}, 1 thread"
    )
    print(
        f"  direct  (fitter + equations + text): p50 {res['direct_p50_ms']:.2f} ms, p90 {res['direct_p90_ms']:.2f} ms"
        f"  [target p50 <= 20 ms: {'met' if res['direct_p50_ms'] <= 20 else 'MISSED'}]"
    )
    print(
        f"  direct CPU time per call: p50 {res['direct_cpu_p50_ms']:.2f} ms, mean {res['direct_cpu_mean_ms']:.2f} ms"
        " (wall time also counts waiting for the shared core)"
    )
    print(
        "  direct p50 by class: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in res["direct_p50_ms_by_class"].items())
    )
    print(
        f"  service (gRPC, same core):           p50 {res['service_p50_ms']:.2f} ms, p90 {res['service_p90_ms']:.2f} ms"
    )
    print(
        f"  service / direct (p50): {res['service_over_direct_p50']:.2f}x "
        f"(+{res['service_overhead_p50_ms']:.2f} ms per call)"
    )
    print(
        f"  CPU per call: service {res['service_cpu_mean_ms']:.2f} ms (server {server_cpu_ms:.2f} + client "
        f"{client_cpu_ms:.2f}) vs direct {res['direct_cpu_mean_ms']:.2f} ms: {res['service_over_direct_cpu']:.2f}x"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

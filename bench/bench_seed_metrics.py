"""What a seed group's merged /metrics costs a scrape (services/trainer/seed_metrics.py).

    .venv/bin/python bench/bench_seed_metrics.py [--scrapes 40] [--children 1,2,4,8]

Children are real prometheus_client HTTP endpoints serving what a trainer child serves (the
trainer's gauges after a status, the shared gRPC counter and latency histogram for the
trainer's six methods, process and Python collectors). For each group size, the group's
/metrics (the merge of every child) is scraped as Prometheus does (OpenMetrics Accept header)
next to one child's own /metrics, in the same run: median wall time per scrape, the ratio,
and the size of the answer. Compose's scrape timeout is 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import REGISTRY, start_http_server  # noqa: E402
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST  # noqa: E402

from services.trainer import metrics  # noqa: E402
from services.trainer.seed_metrics import serve_group_metrics  # noqa: E402
from services.trainer.training import TrainerStatus  # noqa: E402
from trajlab.grpc_server import RPC_LATENCY, RPC_REQUESTS  # noqa: E402

METHODS = ("StartTraining", "GetStatus", "WatchStatus", "GetHistory", "GetResults", "Check")


def fill_trainer_metrics() -> None:
    """The default registry as a trainer child's after some training and RPCs."""
    metrics.record(
        TrainerStatus(
            branch="b1@s0",
            profile="quick",
            state="training",
            epoch=3,
            total_epochs=10,
            train_loss=0.4,
            val_loss=0.5,
            val_accuracy=0.8,
            clips_per_second=90.0,
        )
    )
    for m in METHODS:
        RPC_REQUESTS.labels("trajlab.trainer.v1.TrainerService", m, "OK").inc(5)
        RPC_LATENCY.labels("trajlab.trainer.v1.TrainerService", m).observe(0.003)


def scrape_seconds(url: str, n: int) -> tuple[float, int]:
    """(median seconds per scrape, bytes of the last answer) over n scrapes."""
    times, size = [], 0
    req = urllib.request.Request(url, headers={"Accept": CONTENT_TYPE_LATEST})
    for _ in range(n):
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as resp:
            size = len(resp.read())
        times.append(time.perf_counter() - t0)
    return statistics.median(times), size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=40)
    ap.add_argument("--children", default="1,2,4,8")
    args = ap.parse_args()
    fill_trainer_metrics()
    sizes = [int(x) for x in args.children.split(",")]
    ports = [
        int(start_http_server(0, addr="127.0.0.1", registry=REGISTRY)[0].server_address[1])
        for _ in range(max(sizes))
    ]
    one, one_bytes = scrape_seconds(f"http://127.0.0.1:{ports[0]}/metrics", args.scrapes)
    print(f"one child's /metrics: {one * 1e3:.2f} ms, {one_bytes} bytes (median of {args.scrapes})")
    print("| seeds in the group | group /metrics (ms) | x one child's | bytes |")
    print("|---:|---:|---:|---:|")
    for n in sizes:
        children = {f"b1@s{k}": ports[k] for k in range(n)}
        group = serve_group_metrics("127.0.0.1", 0, children)
        t, size = scrape_seconds(f"http://127.0.0.1:{group}/metrics", args.scrapes)
        print(f"| {n} | {t * 1e3:.2f} | {t / one:.1f} | {size} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

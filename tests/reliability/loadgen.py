"""A closed-loop load generator: N calls shared by C client threads, each on its own channel.

Used by the scaled CI tests here and by bench/bench_load.py (full size). A client
thread sends its next call as soon as the previous one answers, so C is the
number of calls in flight. Every call is recorded with its status code and
latency; nothing is retried (``grpc.enable_retries`` off), so a failure counts.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

# (channel) -> a function sending one call; built once per client thread.
CallFactory = Callable[[grpc.Channel], Callable[[], Any]]


@dataclass
class LoadResult:
    """Codes and latencies (seconds) of every call; wall time of the whole run (seconds)."""

    codes: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # first few non-OK details, for messages

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def percentile(self, q: float, code: str = "OK") -> float:
        """Latency percentile q (0..100) in seconds of calls answered ``code``."""
        lat = sorted(self.latencies.get(code, []))
        if not lat:
            return float("nan")
        if len(lat) == 1:
            return lat[0]
        return statistics.quantiles(lat, n=1000, method="inclusive")[min(998, max(0, int(q * 10) - 1))]

    @property
    def throughput(self) -> float:
        """Answered calls per second of wall time."""
        return self.calls / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def summary(self) -> str:
        return (
            f"{self.calls} calls in {self.wall_seconds:.1f} s ({self.throughput:.0f}/s): "
            f"{dict(self.codes)}; OK p50 {self.percentile(50) * 1e3:.1f} ms, "
            f"p99 {self.percentile(99) * 1e3:.1f} ms"
        )


def run_load(
    target: str,
    make_call: CallFactory,
    *,
    calls: int,
    concurrency: int,
    options: list[tuple[str, Any]] | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Send ``calls`` calls from ``concurrency`` threads (one channel each) to ``target``.

    ``stop`` ends the run early (calls in flight still finish and count).
    """
    counter = itertools.count()
    result = LoadResult()
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)
    opts = [("grpc.enable_retries", 0), *(options or [])]

    def worker() -> None:
        with grpc.insecure_channel(target, options=opts) as ch:
            call = make_call(ch)
            grpc.channel_ready_future(ch).result(timeout=30)
            ready.wait()
            while next(counter) < calls and not (stop is not None and stop.is_set()):
                t0 = time.perf_counter()
                try:
                    call()
                    code, detail = "OK", ""
                except grpc.RpcError as exc:
                    code, detail = exc.code().name, str(exc.details())
                dt = time.perf_counter() - t0
                with lock:
                    result.codes[code] += 1
                    result.latencies.setdefault(code, []).append(dt)
                    if detail and len(result.errors) < 5:
                        result.errors.append(f"{code}: {detail}")

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    result.wall_seconds = time.perf_counter() - start
    return result

"""The encoder's latency histograms resolve a CPU model's latency finely enough to rank branches."""

from __future__ import annotations

import itertools

from prometheus_client import CollectorRegistry, Histogram

from services.encoder.metrics import LATENCY_BUCKETS


def test_buckets_step_by_at_most_an_eighth_where_cpu_models_serve() -> None:
    # histogram_quantile interpolates inside a bucket: a p50 is as fine as its bucket.
    bounds = [b for b in LATENCY_BUCKETS if 0.005 <= b <= 0.05]
    assert bounds[0] == 0.005 and bounds[-1] == 0.05
    steps = [hi / lo for lo, hi in itertools.pairwise(bounds)]
    assert max(steps) <= 1.125 + 1e-9, f"a bucket in 5-50 ms is {max(steps):.3f}x wide"


def test_two_models_4_ms_apart_near_25_ms_fill_different_buckets() -> None:
    hist = Histogram("lat", "", ["branch"], buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for branch, seconds in (("fast", 0.0215), ("mid", 0.0255), ("slow", 0.0295)):
        hist.labels(branch).observe(seconds)
    first_bucket = {}
    for s in hist.collect()[0].samples:
        if s.name == "lat_bucket" and s.value == 1 and s.labels["branch"] not in first_bucket:
            first_bucket[s.labels["branch"]] = s.labels["le"]
    assert len(set(first_bucket.values())) == 3, first_bucket

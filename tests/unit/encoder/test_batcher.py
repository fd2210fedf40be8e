from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from services.encoder.batcher import DynamicBatcher
from services.encoder.errors import DeadlineExceeded
from trajlab.errors import ResourceExhausted, Unavailable


class Recorder:
    """A stand-in model: doubles its input and records every batch size; can be held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.gate.wait(10)
        self.sizes.append(x.shape[0])
        return [x * 2, x.sum(axis=(1, 2))]


def _x(v: float) -> np.ndarray:
    return np.full((1, 2, 3), v, dtype=np.float32)


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows() -> None:
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch_size=4, max_queue_delay_s=0.5, max_queue_size=64, name="t")
    try:
        futs = [b.submit(_x(i), None) for i in range(10)]
        outs = [f.result(5) for f in futs]
    finally:
        b.close()
    for i, (doubled, summed) in enumerate(outs):
        assert doubled.shape == (1, 2, 3) and float(doubled[0, 0, 0]) == 2 * i
        assert float(summed[0]) == 6 * i
    assert rec.sizes == [4, 4, 2]  # full batches go at once; the rest after the window


def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch_size=8, max_queue_delay_s=0.05, max_queue_size=8, name="t")
    try:
        assert b.submit(_x(1), None).result(5)[0].shape == (1, 2, 3)
    finally:
        b.close()
    assert rec.sizes == [1]


def test_expired_requests_are_skipped_not_computed() -> None:
    rec = Recorder()
    b = DynamicBatcher(rec, max_batch_size=8, max_queue_delay_s=0.2, max_queue_size=8, name="t")
    try:
        late = b.submit(_x(1), time.monotonic() + 0.01)
        fine = b.submit(_x(2), time.monotonic() + 10)
        with pytest.raises(DeadlineExceeded):
            late.result(5)
        assert float(fine.result(5)[0][0, 0, 0]) == 4
    finally:
        b.close()
    assert rec.sizes == [1]


def test_full_queue_is_refused_and_closing_answers_what_was_queued() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the worker inside its first run
    b = DynamicBatcher(rec, max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=2, name="t")
    first = b.submit(_x(0), None)
    time.sleep(0.1)  # the worker has taken it and is blocked
    queued = [b.submit(_x(1), None), b.submit(_x(2), None)]
    with pytest.raises(ResourceExhausted, match="batch queue full"):
        b.submit(_x(3), None)
    rec.gate.set()
    b.close()
    assert all(f.done() and f.exception() is None for f in [first, *queued])
    with pytest.raises(Unavailable):
        b.submit(_x(4), None)


def test_a_failing_run_fails_every_request_of_that_batch_only() -> None:
    calls = {"n": 0}

    def flaky(x: np.ndarray) -> list[np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return [x]

    b = DynamicBatcher(flaky, max_batch_size=2, max_queue_delay_s=0.2, max_queue_size=8, name="t")
    try:
        f1, f2 = b.submit(_x(1), None), b.submit(_x(2), None)
        with pytest.raises(RuntimeError):
            f1.result(5)
        with pytest.raises(RuntimeError):
            f2.result(5)
        assert b.submit(_x(3), None).result(5)[0].shape == (1, 2, 3)
    finally:
        b.close()

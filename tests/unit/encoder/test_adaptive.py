"""Adaptive batching: batches form only when requests queue behind a running one."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from services.encoder.adaptive import AdaptiveBatcher
from services.encoder.errors import Cancelled, DeadlineExceeded
from trajlab.errors import ResourceExhausted, Unavailable


class Model:
    """A stand-in model: doubles its input, records batch sizes and threads; can be held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.entered.set()
        assert self.gate.wait(10), "test model held too long"
        self.sizes.append(x.shape[0])
        self.threads.append(threading.current_thread().name)
        return [x * 2, x.sum(axis=(1, 2))]


def _x(v: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2, 3), v, dtype=np.float32)


def _hold(model: Model, batcher: AdaptiveBatcher, pool: ThreadPoolExecutor):  # type: ignore[no-untyped-def]
    """Start one request and keep it inside the model until ``model.gate`` is set."""
    model.gate.clear()
    model.entered.clear()
    fut = pool.submit(batcher.run, _x(100))
    assert model.entered.wait(5)
    return fut


def _wait_queued(batcher: AdaptiveBatcher, n: int) -> None:
    end = time.monotonic() + 5
    while batcher.queued < n:
        assert time.monotonic() < end, f"{n} requests never queued"
        time.sleep(0.005)


def test_one_caller_at_a_time_runs_alone_on_its_own_thread() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=8)
    for i in range(5):
        doubled, summed = b.run(_x(i))
        assert float(doubled[0, 0, 0]) == 2 * i and float(summed[0]) == 6 * i
    assert model.sizes == [1] * 5  # no batch without a queue
    assert set(model.threads) == {threading.current_thread().name}  # no hand-off to a worker


def test_requests_that_queue_behind_a_run_go_together_and_each_gets_its_own_rows() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=64)
    with ThreadPoolExecutor(12) as pool:
        first = _hold(model, b, pool)
        futs = [pool.submit(b.run, _x(i)) for i in range(10)]
        _wait_queued(b, 10)
        model.gate.set()
        outs = [f.result(5) for f in futs]
        assert float(first.result(5)[0][0, 0, 0]) == 200
    for i, (doubled, summed) in enumerate(outs):
        assert doubled.shape == (1, 2, 3) and float(doubled[0, 0, 0]) == 2 * i
        assert summed.shape == (1,) and float(summed[0]) == 6 * i
    assert model.sizes == [1, 8, 2]  # the held one, then the queue in batches of at most 8


def test_requests_of_several_clips_keep_their_rows_and_are_not_split() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=4, max_queue_size=8)
    with ThreadPoolExecutor(4) as pool:
        first = _hold(model, b, pool)
        two = pool.submit(b.run, np.stack([_x(1)[0], _x(2)[0]]))
        _wait_queued(b, 1)
        three = pool.submit(b.run, _x(3, n=3))
        _wait_queued(b, 2)
        model.gate.set()
        first.result(5)
        assert [float(v) for v in two.result(5)[0][:, 0, 0]] == [2, 4]
        assert [float(v) for v in three.result(5)[0][:, 0, 0]] == [6, 6, 6]
    assert model.sizes == [1, 2, 3]  # 2 + 3 clips exceed max_batch_size 4: two runs


def test_a_request_whose_deadline_passes_in_the_queue_is_answered_and_not_run() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=8)
    with ThreadPoolExecutor(4) as pool:
        first = _hold(model, b, pool)
        late = pool.submit(b.run, _x(1), time.monotonic() + 0.05)
        with pytest.raises(DeadlineExceeded):
            late.result(5)
        model.gate.set()
        first.result(5)
    assert model.sizes == [1]
    assert float(b.run(_x(2))[0][0, 0, 0]) == 4  # and the version serves on


def test_a_cancelled_caller_is_not_run() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=8)
    with ThreadPoolExecutor(4) as pool:
        first = _hold(model, b, pool)
        gone = pool.submit(b.run, _x(1), None, lambda: False)
        kept = pool.submit(b.run, _x(2))
        _wait_queued(b, 2)
        model.gate.set()
        first.result(5)
        with pytest.raises(Cancelled):
            gone.result(5)
        assert float(kept.result(5)[0][0, 0, 0]) == 4
    assert model.sizes == [1, 1]


def test_a_full_queue_is_refused_at_once_and_a_closed_batcher_refuses_new_work() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=2)
    with ThreadPoolExecutor(4) as pool:
        first = _hold(model, b, pool)
        queued = [pool.submit(b.run, _x(i)) for i in range(2)]
        _wait_queued(b, 2)
        with pytest.raises(ResourceExhausted):
            b.run(_x(9))
        b.close()
        with pytest.raises(Unavailable):
            b.run(_x(9))
        model.gate.set()
        first.result(5)
        assert [float(f.result(5)[0][0, 0, 0]) for f in queued] == [0, 2]  # queued work is answered


def test_a_failing_run_fails_that_batch_only_and_the_next_caller_runs() -> None:
    calls = [0]

    def flaky(x: np.ndarray) -> list[np.ndarray]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("onnxruntime failed")
        return [x * 2]

    b = AdaptiveBatcher(flaky, max_batch_size=8, max_queue_size=8)
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        b.run(_x(1))
    assert float(b.run(_x(3))[0][0, 0, 0]) == 6


def test_concurrency_two_runs_two_callers_at_once_without_batching_them() -> None:
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=8, concurrency=2)
    with ThreadPoolExecutor(4) as pool:
        first = _hold(model, b, pool)
        model.entered.clear()
        second = pool.submit(b.run, _x(1))
        assert model.entered.wait(5)  # entered the model while the first is still held
        assert b.queued == 0
        model.gate.set()
        first.result(5)
        second.result(5)
    assert model.sizes == [1, 1]


def test_with_two_runs_at_once_the_queue_is_shared_between_them_not_taken_by_one() -> None:
    # One run taking the whole queue while the other gets a clip would leave half the callers
    # waiting for the long run: the tail the hybrid layout would otherwise show.
    model = Model()
    b = AdaptiveBatcher(model, max_batch_size=8, max_queue_size=16, concurrency=2)
    with ThreadPoolExecutor(10) as pool:
        first = _hold(model, b, pool)
        model.entered.clear()
        second = pool.submit(b.run, _x(50))
        assert model.entered.wait(5)
        futs = [pool.submit(b.run, _x(i)) for i in range(6)]
        _wait_queued(b, 6)
        model.gate.set()
        outs = [f.result(5) for f in futs]
        first.result(5)
        second.result(5)
    assert [float(o[0][0, 0, 0]) for o in outs] == [2 * i for i in range(6)]
    assert sum(model.sizes) == 8  # the two held runs and the six queued, each run once
    assert max(model.sizes) <= 3  # each next run took its half of the six (rounded up), not all six


def test_a_shared_slot_is_waited_for_within_the_deadline() -> None:
    slots = threading.Semaphore(1)
    slots.acquire()  # another model version holds the only slot
    b = AdaptiveBatcher(Model(), max_batch_size=8, max_queue_size=8, slots=slots)
    with pytest.raises(DeadlineExceeded):
        b.run(_x(1), time.monotonic() + 0.05)
    slots.release()
    assert float(b.run(_x(1))[0][0, 0, 0]) == 2  # the lead was passed on, not lost


def test_the_default_store_answers_concurrent_callers_each_with_its_own_clip(tmp_path, onnx_models) -> None:  # type: ignore[no-untyped-def]
    from services.encoder.engine import Encoder
    from services.encoder.repository import ModelStore
    from services.encoder.runtime import SessionConfig
    from tests.contract.encoder import kit

    kit.publish(tmp_path / "m", "b1", onnx_models["a"])
    store = ModelStore(tmp_path / "m", session_config=SessionConfig(intra_op_threads=1, warmup_runs=1))
    store.scan()
    enc = Encoder(store)
    clips = kit.random_clips(12)
    try:
        alone = [enc.analyze("b1", 0, c) for c in clips]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda c: enc.analyze("b1", 0, c), clips))
    finally:
        store.close()
    for a, t in zip(alone, together, strict=True):
        np.testing.assert_allclose(t.probabilities, a.probabilities, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t.embedding, a.embedding, rtol=1e-5, atol=1e-5)

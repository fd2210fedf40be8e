"""The hybrid thread layout: a run beside another uses the version's one-thread session, same answers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from services.encoder.engine import Encoder
from services.encoder.layout import RunsInFlight
from services.encoder.repository import ModelStore
from services.encoder.runtime import SessionConfig
from tests.contract.encoder import kit


class _Counting:
    """Wraps an onnxruntime session: counts runs and can hold them at a gate."""

    def __init__(self, session: Any, gate: threading.Event | None = None) -> None:
        self._session, self._gate = session, gate
        self.runs = 0
        self.entered = threading.Event()

    def run(self, *args: Any) -> Any:
        self.runs += 1
        self.entered.set()
        if self._gate is not None:
            assert self._gate.wait(10)
        return self._session.run(*args)


def test_runs_in_flight_says_who_started_alone() -> None:
    flight = RunsInFlight()
    with flight.run() as a, flight.run() as b:
        assert (a, b) == (True, False)
    with flight.run() as c:
        assert c  # the earlier runs ended


def test_hybrid_store_runs_beside_another_on_the_one_thread_session_with_the_same_answers(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    kit.publish(tmp_path / "m", "b1", onnx_models["a"])
    cfg = SessionConfig(intra_op_threads=2, warmup_runs=1)
    wide = ModelStore(tmp_path / "m", session_config=cfg)
    hybrid = ModelStore(tmp_path / "m", session_config=cfg, inference_concurrency=2, hybrid_layout=True)
    wide.scan()
    hybrid.scan()
    clips = kit.random_clips(3)
    try:
        expected = [Encoder(wide).analyze("b1", 0, c) for c in clips]
        with hybrid.lease("b1") as model:
            gate = threading.Event()
            main = _Counting(model._loaded.session, gate)  # type: ignore[union-attr]
            one = _Counting(model._narrow.session)  # type: ignore[union-attr]
            model._loaded.session = main  # type: ignore[union-attr]
            model._narrow.session = one  # type: ignore[union-attr]
        enc = Encoder(hybrid)
        with ThreadPoolExecutor(2) as pool:
            held = pool.submit(enc.analyze, "b1", 0, clips[0])
            assert main.entered.wait(10)  # the first run started alone: every intra-op thread
            beside = pool.submit(enc.analyze, "b1", 0, clips[1]).result(10)
            gate.set()
            first = held.result(10)
        alone_again = enc.analyze("b1", 0, clips[2])
    finally:
        wide.close()
        hybrid.close()
    assert (main.runs, one.runs) == (2, 1)  # the run beside it went to the one-thread session
    for got, want in zip([first, beside, alone_again], expected, strict=True):
        assert got.class_name == want.class_name
        np.testing.assert_allclose(got.probabilities, want.probabilities, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.embedding, want.embedding, rtol=1e-5, atol=1e-5)

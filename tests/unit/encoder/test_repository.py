from __future__ import annotations

import gc
import logging
import shutil
import weakref
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from services.encoder.engine import Encoder
from services.encoder.repository import ModelStore
from services.encoder.runtime import SessionConfig, choose_providers, session_options
from tests.contract.encoder import kit
from trajlab.errors import InvalidClip, ModelNotFound, Unavailable


def _store(root: Path, **kw) -> ModelStore:  # type: ignore[no-untyped-def]
    return ModelStore(root, session_config=SessionConfig(intra_op_threads=1, warmup_runs=1), **kw)


def test_keeps_the_newest_k_versions_and_releases_the_sessions_of_the_others(
    tmp_path: Path, onnx_models
) -> None:
    root = tmp_path / "m"
    kit.publish(root, "b1", onnx_models["a"])
    store = _store(root, keep_versions=2)
    store.scan()
    (v1, _default) = store.models()[0]
    session_ref = weakref.ref(v1._loaded.session)  # type: ignore[union-attr]
    kit.publish(root, "b1", onnx_models["b"])
    kit.publish(root, "b1", onnx_models["a"])
    assert store.scan()
    assert [(m.version, d) for m, d in store.models()] == [(2, False), (3, True)]
    assert v1.closed
    del v1, _default
    gc.collect()
    assert session_ref() is None, "the unloaded version's onnxruntime session is still alive"
    store.close()
    assert store.models() == []


def test_an_in_flight_request_finishes_on_the_version_it_started_with(tmp_path: Path, onnx_models) -> None:
    root = tmp_path / "m"
    kit.publish(root, "b1", onnx_models["a"])
    store = _store(root, keep_versions=1)
    store.scan()
    x = np.zeros((1, 3, kit.FRAMES, kit.HEIGHT, kit.WIDTH), np.float32)
    with store.lease("b1") as old:
        kit.publish(root, "b1", onnx_models["b"])
        store.scan()  # v2 swapped in; v1 retired but leased
        with store.lease("b1") as new:
            assert (old.version, new.version) == (1, 2)
        assert not old.closed
        probs = old.run(x)[0]
        assert probs.shape == (1, 4)
    assert old.closed  # released as soon as its last request ended
    store.close()


def test_half_written_and_foreign_directories_are_ignored(tmp_path: Path, onnx_models) -> None:
    root = tmp_path / "m"
    (root / "b1" / ".tmp-abc").mkdir(parents=True)
    (root / "b1" / ".tmp-abc" / "model.onnx").write_bytes(b"partial")
    (root / "b1" / "latest").mkdir()
    (root / ".cache").mkdir()
    store = _store(root)
    store.scan()
    assert store.models() == [] and store.failures() == []
    with pytest.raises(Unavailable, match="no model loaded yet"), store.lease("b1"):
        pass
    kit.publish(root, "b1", onnx_models["a"])
    store.scan()
    assert [m.version for m, _ in store.models()] == [1]
    store.close()


def test_a_model_with_a_fixed_batch_axis_is_refused(tmp_path: Path, onnx_models, caplog) -> None:
    root = tmp_path / "m"
    kit.publish(root, "b1", onnx_models["fixed"])
    store = _store(root)
    with caplog.at_level(logging.ERROR):
        store.scan()
    ((_b, v, reason, message),) = store.failures()
    assert (v, reason) == (1, "incompatible")
    assert "fixed batch axis" in message and "dynamic batch axis" in message
    store.close()


def test_a_removed_version_is_unloaded_and_the_default_falls_back(tmp_path: Path, onnx_models) -> None:
    root = tmp_path / "m"
    kit.publish(root, "b1", onnx_models["a"])
    kit.publish(root, "b1", onnx_models["b"])
    changes: list[bool] = []
    store = _store(root, on_change=changes.append)
    store.scan()
    enc = Encoder(store)
    clip = kit.random_clips(1)[0]
    assert enc.analyze("b1", 0, clip).version == 2
    shutil.rmtree(root / "b1" / "2")
    store.scan()
    assert enc.analyze("b1", 0, clip).version == 1
    with pytest.raises(ModelNotFound, match="version 2 of branch 'b1' is not loaded"):
        enc.analyze("b1", 2, clip)
    with pytest.raises(InvalidClip, match="expects clips of frames=8"):
        enc.analyze("b1", 0, clip[:4])
    assert changes == [True, True]
    store.close()


def test_session_options_are_explicit_for_a_shared_cpu() -> None:
    so = session_options(SessionConfig(intra_op_threads=3))
    assert so.intra_op_num_threads == 3
    assert so.inter_op_num_threads == 1
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_cuda_is_used_only_when_present_else_cpu_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        chosen = choose_providers(("CUDAExecutionProvider", "CPUExecutionProvider"))
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert chosen == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        assert chosen == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider" in caplog.text and "falling back" in caplog.text


def test_concurrent_calls_without_deadline_wait_their_turn(tmp_path: Path, onnx_models) -> None:
    from concurrent.futures import ThreadPoolExecutor

    root = tmp_path / "m"
    kit.publish(root, "b1", onnx_models["a"])
    store = _store(root, inference_concurrency=1)
    store.scan()
    enc = Encoder(store)
    clips = kit.random_clips(12)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda c: enc.analyze("b1", 0, c), clips))
    assert [r.version for r in results] == [1] * 12
    store.close()

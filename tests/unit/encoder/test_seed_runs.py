"""The encoder serves each seed run under its name, and a plain branch name as its default (lowest) seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.encoder.repository import ModelStore
from services.encoder.runtime import SessionConfig
from tests.contract.encoder import kit
from trajlab.errors import ModelNotFound


def test_seed_runs_are_addressable_and_the_branch_name_serves_the_lowest_seed(
    tmp_path: Path, onnx_models
) -> None:
    root = tmp_path / "m"
    kit.publish(root, "b1@s1", onnx_models["a"])
    kit.publish(root, "b1@s0", onnx_models["b"])
    kit.publish(root, "b2@s3", onnx_models["a"])
    store = ModelStore(root, session_config=SessionConfig(intra_op_threads=1, warmup_runs=1))
    store.scan()
    try:
        assert {m.branch for m, _ in store.models()} == {"b1@s0", "b1@s1", "b2@s3"}
        with store.lease("b1@s1") as m:
            assert m.branch == "b1@s1"
        with store.lease("b1") as m:
            assert m.branch == "b1@s0"  # the default run of b1: its lowest seed
        with store.lease("b2") as m:
            assert m.branch == "b2@s3"
        # Listing by a plain branch name lists the run a request for it would use.
        assert {m.branch for m, _ in store.models("b1")} == {"b1@s0"}
        assert {m.branch for m, _ in store.models("b1@s1")} == {"b1@s1"}
        assert store.models("b3") == []
        with pytest.raises(ModelNotFound, match="unknown branch 'b3'"), store.lease("b3"):
            pass
    finally:
        store.close()

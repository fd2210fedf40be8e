"""A hostile model repository: symlinks out of it, malicious metadata.json, path-like branch names.

Each bad version is published beside a good one while the encoder serves; over
gRPC the bad one must never be served (refused at load, FAILED_PRECONDITION when
asked for by number), the good one keeps answering, and the process survives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from tests.contract.encoder import kit
from tests.reliability.test_encoder_load import classify_request, wait_for
from trajlab.config import load_settings
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.modelrepo import MAX_METADATA_BYTES, sha256_file


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    repo, outside = tmp_path / "models", tmp_path / "outside"
    repo.mkdir()
    outside.mkdir()
    return repo, outside


@pytest.fixture
def server(layout: tuple[Path, Path], tiny_onnx: dict[str, Path]) -> Iterator[EncoderServer]:
    repo, _ = layout
    kit.publish(repo, "b1", tiny_onnx["a"])
    srv = EncoderServer(
        load_settings(
            EncoderSettings, host="127.0.0.1", port=0, metrics_port=-1, model_repo=repo,
            poll_seconds=0.05, intra_op_threads=1, warmup_runs=1, keep_versions=64,
        )
    )
    srv.start()
    yield srv
    srv.stop(0)


def _hand_version(repo: Path, branch: str, version: int, files: dict[str, bytes | Path]) -> Path:
    """A version directory made by hand; a Path value becomes a symlink to it."""
    tmp = repo / branch / f".tmp-hand-{version}"
    tmp.mkdir(parents=True)
    for name, content in files.items():
        if isinstance(content, Path):
            (tmp / name).symlink_to(content)
        else:
            (tmp / name).write_bytes(content)
    final = repo / branch / str(version)
    tmp.rename(final)
    return final


def test_versions_escaping_the_repository_or_with_hostile_metadata_are_never_served(
    server: EncoderServer, layout: tuple[Path, Path], tiny_onnx: dict[str, Path]
) -> None:
    repo, outside = layout
    good = tiny_onnx["b"].read_bytes()
    meta1 = json.loads((repo / "b1" / "1" / "metadata.json").read_text())

    def meta(version: int, **over: object) -> bytes:
        m = {**meta1, "version": version, "model_sha256": sha256_file(tiny_onnx["b"]),
             "model_size_bytes": len(good), **over}
        return json.dumps(m).encode()

    # Files outside the repository that a symlink points at (checksums correct).
    (outside / "model.onnx").write_bytes(good)
    (outside / "metadata.json").write_bytes(meta(3))
    refused = {
        2: {"model.onnx": outside / "model.onnx", "metadata.json": meta(2)},  # model symlinked out
        3: {"model.onnx": good, "metadata.json": outside / "metadata.json"},  # metadata symlinked out
        4: {"model.onnx": good, "metadata.json": meta(4, __class__="os.system", cmd="rm -rf /")},
        5: {"model.onnx": good, "metadata.json": meta(5, branch="../b2")},  # names another branch
        6: {"model.onnx": good, "metadata.json": b"[" * 400_000 + b"]" * 400_000},  # deep nesting
        7: {"model.onnx": good, "metadata.json": b" " * (MAX_METADATA_BYTES + 1) + b"{}"},  # too big
        8: {"model.onnx": good, "metadata.json": meta(8, input={**meta1["input"], "frames": 10**12})},
        9: {"model.onnx": good, "metadata.json": b"\xff\xfe not json at all"},
        10: {"model.onnx": good, "metadata.json": meta(10, input={**meta1["input"], "std": [0, 0, 0]})},
    }
    for v, files in refused.items():
        _hand_version(repo, "b1", v, files)
    # A whole version directory that is a symlink to one outside: not a version at all.
    kit.publish(outside, "b1", tiny_onnx["b"])  # outside/b1/1
    (repo / "b1" / "11").symlink_to(outside / "b1" / "1", target_is_directory=True)
    # A branch directory that is a symlink out of the repository, holding a valid model.
    kit.publish(outside, "evil", tiny_onnx["b"])
    (repo / "evil").symlink_to(outside / "evil", target_is_directory=True)

    wait_for(lambda: {v for _b, v, _r, _m in server.store.failures() if _b == "b1"} >= set(refused),
             what=f"every bad version refused; refused so far: {server.store.failures()}")
    wait_for(lambda: any(b == "evil" for b, *_ in server.store.failures()), what="the evil branch refused")
    failures = {(b, v): (reason, msg) for b, v, reason, msg in server.store.failures()}
    assert "outside the model repository" in failures[("b1", 2)][1]
    assert "outside the model repository" in failures[("b1", 3)][1]
    assert "outside the model repository" in failures[("evil", 1)][1]
    assert "__class__" in failures[("b1", 4)][1]

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        served = stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=10).models
        assert [(m.model.branch, m.model.version) for m in served] == [("b1", 1)]
        assert stub.Classify(classify_request("b1"), timeout=10).model.version == 1
        for v in refused:
            req = classify_request("b1")
            req.model.version = v
            with pytest.raises(grpc.RpcError) as e:
                stub.Classify(req, timeout=10)
            assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (v, e.value.details())
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(classify_request("evil"), timeout=10)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # Branch names that look like paths are names, never paths: unknown branch.
        for name in ("../b1", "b1/../b1", "/etc/passwd", "b1/1", ".", "..", "b1\x00"):
            with pytest.raises(grpc.RpcError) as e:
                stub.Classify(classify_request(name), timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND, (name, e.value.details())
    # Nothing was written outside the repository, or into it, by serving.
    assert sorted(os.listdir(outside)) == ["b1", "evil", "metadata.json", "model.onnx"]

"""The encoder under load, over real gRPC to ``python -m services.encoder``.

Scaled-down versions of bench/bench_load.py (which runs 10,000 calls and records
p50/p99/throughput): these assert what a user would notice, that no call fails,
that overload is refused with RESOURCE_EXHAUSTED rather than hanging, that bad
model versions published while serving cost zero requests, and that hot reloads
do not grow the process's resident memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.contract.encoder import kit
from tests.reliability.conftest import EncoderFactory
from tests.reliability.loadgen import run_load
from tests.reliability.procs import ServiceProcess
from trajlab.codec import array_to_clip
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.modelrepo import sha256_file

CALL_TIMEOUT = 30.0  # seconds; a call that takes longer counts as failed (DEADLINE_EXCEEDED)


def classify_request(branch: str = "b1", seed: int = 0) -> encoder_pb2.ClassifyRequest:
    clip = array_to_clip(kit.random_clips(1, seed=seed)[0], kit.FPS)
    return encoder_pb2.ClassifyRequest(model={"branch": branch}, clip=clip)


def classify_caller(
    req: encoder_pb2.ClassifyRequest, versions: set[int] | None = None
) -> Callable[[grpc.Channel], Callable[[], object]]:
    def make(ch: grpc.Channel) -> Callable[[], object]:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)

        def call() -> object:
            resp = stub.Classify(req, timeout=CALL_TIMEOUT)
            if versions is not None:
                versions.add(resp.model.version)
            return resp

        return call

    return make


def list_models(target: str, branch: str = "b1") -> list[encoder_pb2.ModelInfo]:
    with grpc.insecure_channel(target) as ch:
        return list(
            encoder_pb2_grpc.EncoderServiceStub(ch)
            .ListModels(encoder_pb2.ListModelsRequest(branch=branch), timeout=10)
            .models
        )


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_serving(proc: ServiceProcess, version: int, branch: str = "b1") -> None:
    def newest() -> bool:
        try:
            return any(m.is_default and m.model.version == version for m in list_models(proc.target, branch))
        except grpc.RpcError:
            return False

    wait_for(newest, what=f"{branch} v{version} to serve\n{proc.output[-3000:]}")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (/proc/<pid>/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    return root


@pytest.mark.slow
def test_1000_classify_calls_from_32_clients_all_succeed(
    repo: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory
) -> None:
    kit.publish(repo, "b1", tiny_onnx["a"])
    proc = encoder_process(repo)
    wait_serving(proc, 1)
    versions: set[int] = set()
    res = run_load(proc.target, classify_caller(classify_request(), versions), calls=1000, concurrency=32)
    assert res.codes == {"OK": 1000}, (res.summary(), res.errors)
    assert versions == {1}


def test_over_the_concurrency_bound_the_excess_is_refused_not_queued(
    repo: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory
) -> None:
    kit.publish(repo, "b1", tiny_onnx["a"])
    # A 50 ms batching window keeps each admitted call in flight long enough that
    # 32 clients always exceed the bound of 4 concurrent RPCs.
    proc = encoder_process(
        repo, max_concurrent_rpcs=4, batching="true", max_batch_size=64, max_queue_delay_ms=50
    )
    wait_serving(proc, 1)
    res = run_load(proc.target, classify_caller(classify_request()), calls=400, concurrency=32)
    assert res.calls == 400
    # Only the two answers a client should see: served, or refused at once. No
    # DEADLINE_EXCEEDED (a hang), no UNAVAILABLE or INTERNAL (a crash).
    assert set(res.codes) == {"OK", "RESOURCE_EXHAUSTED"}, (res.summary(), res.errors)
    assert proc.proc.poll() is None
    # The bound does not wedge the server: once the burst is over, calls are served again.
    again = run_load(proc.target, classify_caller(classify_request()), calls=20, concurrency=2)
    assert again.codes == {"OK": 20}, again.errors


def _write_version(repo: Path, branch: str, version: int, model: bytes, meta: dict) -> None:
    """A version directory written by hand (a buggy or hostile exporter), renamed into place."""
    tmp = repo / branch / f".tmp-hand-{version}"
    tmp.mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(model)
    (tmp / "metadata.json").write_text(json.dumps(meta))
    tmp.rename(repo / branch / str(version))


@pytest.mark.slow
def test_bad_versions_published_while_serving_cost_zero_requests(
    repo: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory
) -> None:
    kit.publish(repo, "b1", tiny_onnx["a"])
    proc = encoder_process(repo)
    wait_serving(proc, 1)
    good_meta = json.loads((repo / "b1" / "1" / "metadata.json").read_text())
    versions: set[int] = set()
    stop = threading.Event()
    results = []
    load = threading.Thread(
        target=lambda: results.append(
            run_load(proc.target, classify_caller(classify_request(), versions), calls=50_000,
                     concurrency=8, stop=stop)
        )
    )
    load.start()
    try:
        time.sleep(0.5)
        # v2: garbage bytes (checksum recorded correctly, so onnxruntime is what refuses it).
        garbage = repo.parent / "garbage.onnx"
        garbage.write_bytes(b"\x08\x07not an onnx model" * 100)
        kit.publish(repo, "b1", garbage)
        # v3: a real model truncated to half its bytes (a copy cut short).
        half = tiny_onnx["b"].read_bytes()[: tiny_onnx["b"].stat().st_size // 2]
        truncated = repo.parent / "truncated.onnx"
        truncated.write_bytes(half)
        kit.publish(repo, "b1", truncated)
        # v4: a model with a fixed batch axis (incompatible with batching).
        kit.publish(repo, "b1", tiny_onnx["fixed"])
        # v5: a good model whose file was replaced after its checksum was recorded.
        _write_version(repo, "b1", 5, garbage.read_bytes(), {**good_meta, "version": 5})
        # v6: a good model, metadata says 16 frames (incompatible input).
        kit.publish(repo, "b1", tiny_onnx["b"], input={**kit.metadata("b1")["input"], "frames": 16})
        wait_for(lambda: "refused model b1 v6" in proc.output, what="v6 to be refused")
        time.sleep(0.5)  # more calls after the last refusal
    finally:
        stop.set()
        load.join(60)
    res = results[0]
    assert res.calls > 100 and res.codes == {"OK": res.calls}, (res.summary(), res.errors)
    assert versions == {1}
    for v in range(2, 7):
        assert f"refused model b1 v{v}" in proc.output
    # A good version after the bad ones is still picked up.
    kit.publish(repo, "b1", tiny_onnx["b"])
    wait_serving(proc, 7)
    assert sha256_file(tiny_onnx["b"]) == next(m.sha256 for m in list_models(proc.target) if m.is_default)


@pytest.mark.slow
def test_resident_memory_is_flat_over_20_hot_reloads(
    repo: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory
) -> None:
    kit.publish(repo, "b1", tiny_onnx["a"])
    proc = encoder_process(repo, keep_versions=1)
    wait_serving(proc, 1)
    req = classify_request()
    warmup, cycles = 5, 20
    rss: list[int] = []
    with grpc.insecure_channel(proc.target) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        for i in range(warmup + cycles):
            version = kit.publish(repo, "b1", tiny_onnx["b" if i % 2 == 0 else "a"])
            wait_serving(proc, version)
            for _ in range(20):
                assert stub.Classify(req, timeout=CALL_TIMEOUT).model.version == version
            # The retired version is closed once idle: only one stays loaded.
            wait_for(lambda: len(list_models(proc.target)) == 1, what="the old version to unload")
            rss.append(rss_kib(proc.proc.pid))
    growth_mib = (rss[-1] - rss[warmup - 1]) / 1024
    assert growth_mib < 30, f"RSS grew {growth_mib:.1f} MiB over {cycles} reloads: {rss} KiB"

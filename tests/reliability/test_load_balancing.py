"""Client-side round robin over encoder replicas, and connections that age out.

In Kubernetes the encoder runs as several replicas behind a headless Service, and
trajlab's clients resolve it to every pod's address and balance round robin (gRPC's
default, pick_first, would send every call of a channel to one pod). Here two real
``python -m services.encoder`` processes stand behind one target,
``ipv4:127.0.0.1:P1,127.0.0.1:P2`` (what a headless Service's DNS name resolves to),
and every call goes through trajlab's own EncoderClient.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.contract.encoder import kit
from tests.reliability.conftest import EncoderFactory
from tests.reliability.test_encoder_load import wait_for, wait_serving
from trajlab.clients.encoder import EncoderClient


def _two_replicas(tmp_path: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory, **env: str):
    # Each replica has its own repository so an answer says which replica gave it: replica A
    # serves b1 version 1, replica B version 2 (in a cluster both read the same store).
    repo_a, repo_b = tmp_path / "a", tmp_path / "b"
    kit.publish(repo_a, "b1", tiny_onnx["a"])
    kit.publish(repo_b, "b1", tiny_onnx["a"])
    kit.publish(repo_b, "b1", tiny_onnx["b"])
    a = encoder_process(repo_a, **env)
    b = encoder_process(repo_b, **env)
    wait_serving(a, 1)
    wait_serving(b, 2)
    return a, b


def test_round_robin_spreads_calls_over_both_replicas(
    tmp_path: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _two_replicas(tmp_path, tiny_onnx, encoder_process)
    target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
    clip = kit.random_clips(1)[0]
    answered: Counter[int] = Counter()
    with EncoderClient(target) as client:
        for _ in range(40):
            answered[client.classify(clip, branch="b1", fps=kit.FPS).version] += 1
    assert set(answered) == {1, 2}, f"one replica got every call: {answered}"
    assert min(answered.values()) >= 10, f"calls were not spread: {answered}"

    # gRPC's default policy on the same target sends everything to one replica: what round
    # robin is for. (TRAJLAB_GRPC_LB_POLICY switches every trajlab client back to it.)
    monkeypatch.setenv("TRAJLAB_GRPC_LB_POLICY", "pick_first")
    pinned: Counter[int] = Counter()
    with EncoderClient(target) as client:
        for _ in range(20):
            pinned[client.classify(clip, branch="b1", fps=kit.FPS).version] += 1
    assert len(pinned) == 1, pinned
    monkeypatch.delenv("TRAJLAB_GRPC_LB_POLICY")

    # A replica going away (a pod drained on a node's maintenance) costs no call.
    b.terminate()
    with EncoderClient(target) as client:
        after = Counter(client.classify(clip, branch="b1", fps=kit.FPS).version for _ in range(20))
    assert after == Counter({1: 20})


def test_max_connection_age_reconnects_without_failing_calls(
    tmp_path: Path, tiny_onnx: dict[str, Path], encoder_process: EncoderFactory
) -> None:
    """The servers close aged connections (GOAWAY), so clients re-resolve and reach new replicas;
    calls in flight finish and the next ones go over a new connection, none failing."""
    repo = tmp_path / "repo"
    kit.publish(repo, "b1", tiny_onnx["a"])
    proc = encoder_process(repo, max_connection_age_seconds="0.3", max_connection_age_grace_seconds="5")
    wait_serving(proc, 1)
    channel = grpc.insecure_channel(proc.target)
    ready = []
    lock = threading.Lock()

    def on_state(state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            with lock:
                ready.append(state)

    channel.subscribe(on_state, try_to_connect=True)
    health = health_pb2_grpc.HealthStub(channel)
    clip = kit.random_clips(1)[0]
    with EncoderClient(proc.target) as client:
        stub_calls = 0

        def connected_again() -> bool:
            nonlocal stub_calls
            client.classify(clip, branch="b1", fps=kit.FPS)  # raises (fails the test) on any error
            stub_calls += 1
            # The observer channel sees its own connection aged out and re-established.
            health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            with lock:
                return len(ready) >= 3

        wait_for(connected_again, timeout=60, what="the server to age out connections (READY again)")
    channel.unsubscribe(on_state)
    channel.close()
    assert stub_calls > 0

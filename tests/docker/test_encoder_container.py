"""The encoder image, started with testcontainers, answers its contract over loopback.

What a user of ``docker compose up`` relies on: the image starts as a non-root user,
serves the model repository mounted read-only, says SERVING over the gRPC health
protocol (and Docker's HEALTHCHECK agrees), answers every RPC with the contract's
shapes, refuses bad input with the right status code, and exposes its metrics.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.contract.encoder import kit
from tests.docker.conftest import make_world_readable
from tests.docker.containers import EncoderContainer
from trajlab.codec import array_to_clip
from trajlab.common.v1 import common_pb2
from trajlab.encoder.v1 import encoder_pb2

# Generous: the first test of a session may build its image from scratch (minutes on 2 cores).
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def encoder(image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EncoderContainer]:  # type: ignore[no-untyped-def]
    import shutil
    import tempfile

    name = image("encoder")
    onnx_dir = tmp_path_factory.mktemp("onnx")
    repo = Path(tempfile.mkdtemp(prefix="trajlab-models-"))
    try:
        kit.publish(repo, "b1", kit.export_tiny_model(onnx_dir / "a.onnx", seed=0))
        make_world_readable(repo)
        with EncoderContainer(repo, image=name) as c:
            yield c
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def _clip(seed: int = 0) -> common_pb2.Clip:
    return array_to_clip(kit.random_clips(1, seed=seed)[0], kit.FPS)


def test_runs_as_non_root_with_the_repository_read_only(encoder: EncoderContainer) -> None:
    attrs = encoder.get_wrapped_container().attrs
    assert attrs["Config"]["User"] == "trajlab"
    mounts = {m["Destination"]: m for m in attrs["Mounts"]}
    assert mounts["/models"]["RW"] is False
    bindings = [b for bs in attrs["HostConfig"]["PortBindings"].values() for b in bs]
    assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}


def test_the_image_carries_onnxruntime_and_no_torch(encoder: EncoderContainer) -> None:
    code, out = encoder.exec(["python", "-c", "import importlib.util as u; print(bool(u.find_spec('torch')), bool(u.find_spec('onnxruntime')))"])
    assert code == 0 and out.decode().split() == ["False", "True"]


def test_every_rpc_answers_with_the_contract_shapes(encoder: EncoderContainer) -> None:
    stub = encoder.stub()
    models = stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=10).models
    assert [(m.model.branch, m.model.version) for m in models] == [("b1", 1)]
    assert models[0].execution_provider == "CPUExecutionProvider"

    ref = common_pb2.ModelRef(branch="b1")
    c = stub.Classify(encoder_pb2.ClassifyRequest(model=ref, clip=_clip(1)), timeout=10)
    probs = np.array(list(c.probabilities))
    assert probs.shape == (4,) and abs(probs.sum() - 1.0) < 1e-4
    assert c.class_name == list(c.class_names)[int(np.argmax(probs))]

    f = stub.Forecast(encoder_pb2.ForecastRequest(model=ref, clip=_clip(2)), timeout=10)
    assert len(f.positions) == len(f.times) == kit.HORIZON

    a = stub.Analyze(encoder_pb2.AnalyzeRequest(model=ref, clip=_clip(3)), timeout=10)
    assert len(a.embedding) == kit.EMBED and len(a.positions) == kit.HORIZON


@pytest.mark.parametrize(
    ("branch", "version", "mutate", "code"),
    [
        ("nope", 0, None, grpc.StatusCode.NOT_FOUND),  # unknown branch
        ("b1", 99, None, grpc.StatusCode.NOT_FOUND),  # unknown version
        ("b1", 0, "truncate", grpc.StatusCode.INVALID_ARGUMENT),  # pixels do not match the shape
        ("b1", 0, "empty", grpc.StatusCode.INVALID_ARGUMENT),  # no clip at all
    ],
)
def test_bad_requests_get_their_status_code(
    encoder: EncoderContainer, branch: str, version: int, mutate: str | None, code: grpc.StatusCode
) -> None:
    clip = _clip()
    if mutate == "truncate":
        clip.pixels = clip.pixels[:-1]
    elif mutate == "empty":
        clip = common_pb2.Clip()
    ref = common_pb2.ModelRef(branch=branch, version=version)
    with pytest.raises(grpc.RpcError) as err:
        encoder.stub().Classify(encoder_pb2.ClassifyRequest(model=ref, clip=clip), timeout=10)
    assert err.value.code() == code
    assert err.value.details()  # a message a user can act on


def test_metrics_count_the_calls_by_branch_and_code(encoder: EncoderContainer) -> None:
    ref = common_pb2.ModelRef(branch="b1")
    encoder.stub().Classify(encoder_pb2.ClassifyRequest(model=ref, clip=_clip(5)), timeout=10)
    with urllib.request.urlopen(encoder.metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    assert 'trajlab_encoder_requests_total{branch="b1",code="OK",method="Classify"}' in text
    assert "trajlab_grpc_requests_total" in text


def test_docker_healthcheck_reports_healthy(encoder: EncoderContainer) -> None:
    # The image's HEALTHCHECK (gRPC health probe) runs every 10 s; the first run decides.
    deadline = time.monotonic() + 60
    while encoder.docker_health() != "healthy" and time.monotonic() < deadline:
        time.sleep(1)
    assert encoder.docker_health() == "healthy", encoder.logs_text()

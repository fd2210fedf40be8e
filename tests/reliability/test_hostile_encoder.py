"""The encoder against a hostile model repository and hostile clients (issue 23).

Version directories the contract cannot carry (2^32 and more) or that only look like
numbers ("²", "٣" pass ``str.isdigit()``) must be skipped at scan time, counted and
logged once, while every other version and branch keeps loading and serving; client
strings come back shortened; impossible frame rates are refused.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from tests.contract.encoder import kit
from tests.reliability.test_encoder_load import classify_request, wait_for
from trajlab.codec import MAX_FPS, MIN_FPS
from trajlab.config import load_settings
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.modelrepo import MAX_VERSION, parse_version


@pytest.fixture
def repo(tmp_path: Path, tiny_onnx: dict[str, Path]) -> Path:
    root = tmp_path / "models"
    for branch in ("b1", "b2", "b3"):
        kit.publish(root, branch, tiny_onnx["a"])
    return root


@pytest.fixture
def server(repo: Path) -> Iterator[EncoderServer]:
    srv = EncoderServer(
        load_settings(
            EncoderSettings,
            host="127.0.0.1",
            port=0,
            metrics_port=-1,
            model_repo=repo,
            poll_seconds=0.05,
            intra_op_threads=1,
            warmup_runs=1,
        )
    )
    srv.start()
    yield srv
    srv.stop(0)


def _skipped(branch: str, reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "trajlab_encoder_repository_skipped_total", {"branch": branch, "reason": reason}
        )
        or 0.0
    )


def _copy_version(repo: Path, branch: str, name: str) -> None:
    """b/1 copied by hand as b/<name>, its metadata's version set to match (a valid model)."""
    src, tmp = repo / branch / "1", repo / branch / f".tmp-{name}"
    shutil.copytree(src, tmp)
    meta = json.loads((tmp / "metadata.json").read_text())
    meta["version"] = int(name) if name.isascii() and name.isdigit() else meta["version"]
    (tmp / "metadata.json").write_text(json.dumps(meta))
    tmp.rename(repo / branch / name)


def test_parse_version_accepts_only_canonical_ascii_that_fits_the_contract() -> None:
    assert parse_version("1") == (1, "")
    assert parse_version(str(MAX_VERSION)) == (MAX_VERSION, "")
    for name, why in [
        (str(MAX_VERSION + 1), "out_of_range"),
        ("4294967297", "out_of_range"),
        ("9" * 5000, "not_a_number"),
        ("²", "not_a_number"),
        ("٣", "not_a_number"),
        ("01", "not_a_number"),
        ("0", "not_a_number"),
        ("+1", "not_a_number"),
        (" 1", "not_a_number"),
        ("1_0", "not_a_number"),
        ("", "not_a_number"),
    ]:
        assert parse_version(name) == (None, why), name


def test_out_of_range_and_unicode_digit_versions_are_skipped_and_the_rest_keeps_serving(
    server: EncoderServer, repo: Path, tiny_onnx: dict[str, Path]
) -> None:
    before_range, before_nan = _skipped("b2", "out_of_range"), _skipped("b3", "not_a_number")
    _copy_version(repo, "b2", "4294967297")  # a valid model under a version the contract cannot carry
    (repo / "b3" / "²").mkdir()  # str.isdigit() is True, int() raises
    (repo / "b3" / "٣").mkdir()
    kit.publish(repo, "b3", tiny_onnx["b"])  # a good b3/2 published meanwhile
    kit.publish(repo, "b1", tiny_onnx["b"])  # and b1/2, a branch scanned before
    wait_for(
        lambda: {(m.branch, m.version) for m, _ in server.store.models()} >= {("b1", 2), ("b3", 2)},
        what="the good versions published next to the bad entries",
    )
    wait_for(lambda: _skipped("b3", "not_a_number") >= before_nan + 2, what="the unicode digits counted")
    for _ in range(3):  # later scans count and log nothing new
        server.store.scan()
    assert _skipped("b2", "out_of_range") == before_range + 1
    assert _skipped("b3", "not_a_number") == before_nan + 2
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        models = stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=10).models
        assert {(m.model.branch, m.model.version) for m in models if m.is_default} == {
            ("b1", 2),
            ("b2", 1),
            ("b3", 2),
        }
        assert stub.Classify(classify_request("b2"), timeout=10).model.version == 1
        assert stub.Classify(classify_request("b3"), timeout=10).model.version == 2


def test_a_huge_branch_name_comes_back_shortened_as_not_found(server: EncoderServer) -> None:
    huge = "b" * (4 << 20)
    with grpc.insecure_channel(
        f"127.0.0.1:{server.port}", options=[("grpc.max_send_message_length", 64 << 20)]
    ) as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Classify(classify_request(huge), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()[:200]
    assert len(err.value.details()) < 1000 and f"{4 << 20} characters" in err.value.details()


@pytest.mark.parametrize("fps", [float("inf"), float("-inf"), float("nan"), 1e-45, -8.0, 1e300, MAX_FPS * 2])
def test_impossible_frame_rates_are_refused_naming_the_range(server: EncoderServer, fps: float) -> None:
    req = classify_request("b1")
    req.clip.fps = fps
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Forecast(encoder_pb2.ForecastRequest(model=req.model, clip=req.clip), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "clip.fps" in err.value.details() and f"{MIN_FPS:g}" in err.value.details()


@pytest.mark.parametrize("fps", [0.0, MIN_FPS, 8.0, MAX_FPS])
def test_zero_and_sane_frame_rates_are_served(server: EncoderServer, fps: float) -> None:
    req = classify_request("b1")
    req.clip.fps = fps
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = encoder_pb2_grpc.EncoderServiceStub(ch)
        resp = stub.Forecast(encoder_pb2.ForecastRequest(model=req.model, clip=req.clip), timeout=10)
    times = list(resp.times)
    assert all(b > a for a, b in itertools.pairwise(times)) and all(t < 1e9 for t in times)

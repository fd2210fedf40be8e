"""The encoder over a real gRPC channel: answers, hot reload, refusals, errors, limits."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from tests.contract.encoder import kit
from trajlab.clients.encoder import EncoderClient
from trajlab.codec import array_to_clip
from trajlab.common.v1 import common_pb2
from trajlab.encoder.v1 import encoder_pb2, encoder_pb2_grpc
from trajlab.errors import InvalidClip
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input

SERVICE = "trajlab.encoder.v1.EncoderService"


def direct(onnx_path: Path, clips: np.ndarray) -> list[np.ndarray]:
    """What onnxruntime itself answers for these clips: the reference the server must equal."""
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(
        ["probabilities", "forecast", "embedding"], {"clip": to_model_input(clips, DEFAULT_MEAN, DEFAULT_STD)}
    )


def stub_for(port: int, **opts: int) -> tuple[grpc.Channel, encoder_pb2_grpc.EncoderServiceStub]:
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0), *opts.items()])
    return ch, encoder_pb2_grpc.EncoderServiceStub(ch)


def health_status(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return (
            health_pb2_grpc.HealthStub(ch)
            .Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
            .status
        )


def wait_for(pred, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_answers_have_the_contract_shapes_and_equal_onnxruntime(start_server, repo, onnx_models) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server()
    clips = kit.random_clips(3, seed=4)
    ref_p, ref_f, ref_e = direct(onnx_models["a"], clips)
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10) as enc:
        enc.wait_until_serving(10)
        for i, clip in enumerate(clips):
            c = enc.classify(clip, branch="b1")
            assert (c.branch, c.version) == ("b1", 1)
            probs = np.array(list(c.probabilities.values()))
            assert list(c.probabilities) == ["linear", "circular", "helical", "parabolic"]
            assert probs.sum() == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(probs, ref_p[i], atol=1e-6)
            assert c.class_name == list(c.probabilities)[int(np.argmax(ref_p[i]))]

            f = enc.forecast(clip, branch="b1", fps=4.0)
            assert f.positions.shape == (kit.HORIZON, 3)
            np.testing.assert_allclose(f.positions, ref_f[i], atol=1e-6)
            # The forecast frames follow the clip's last frame: frames 8..11 at 4 fps.
            np.testing.assert_allclose(f.times, (kit.FRAMES + np.arange(kit.HORIZON)) / 4.0)

            a = enc.analyze(clip, branch="b1", version=1)
            assert a.embedding.shape == (kit.EMBED,)
            np.testing.assert_allclose(a.embedding, ref_e[i], atol=1e-6)
            np.testing.assert_allclose(a.forecast.positions, ref_f[i], atol=1e-6)
            # No fps on the clip: the model's training fps converts frames to seconds.
            np.testing.assert_allclose(a.forecast.times, (kit.FRAMES + np.arange(kit.HORIZON)) / kit.FPS)

        (info,) = enc.list_models()
        assert (info.branch, info.version, info.is_default) == ("b1", 1, True)
        assert info.input_shape == (kit.FRAMES, kit.HEIGHT, kit.WIDTH, kit.CHANNELS)
        assert info.execution_provider == "CPUExecutionProvider"
        assert info.metadata["model_sha256"] == info.sha256
        assert (info.forecast_horizon, info.embedding_dim) == (kit.HORIZON, kit.EMBED)
    assert metric("trajlab_encoder_requests_total", method="Classify", branch="b1", code="OK") >= 3
    assert metric("trajlab_encoder_inference_seconds_count", branch="b1") >= 9
    assert metric("trajlab_encoder_models_loaded", branch="b1") == 1


def test_hot_reload_under_a_stream_of_requests_drops_nothing(start_server, repo, onnx_models) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server(poll_seconds=0.05)
    clip = kit.random_clips(1, seed=7)[0]
    ref_b = direct(onnx_models["b"], clip[None])[0][0]
    failures: list[BaseException] = []
    versions: list[int] = []
    reloaded = threading.Event()
    stop = threading.Event()

    def stream() -> None:
        with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10, retries=False) as enc:
            deadline = time.monotonic() + 20  # bounded even if the reload never shows up
            after = 0
            while not stop.is_set() and time.monotonic() < deadline and after < 30:
                try:
                    c = enc.classify(clip, branch="b1")
                except Exception as exc:
                    failures.append(exc)
                    continue
                versions.append(c.version)
                if c.version == 2:
                    reloaded.set()
                    after += 1
                    np.testing.assert_allclose(list(c.probabilities.values()), ref_b, atol=1e-6)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(versions) >= 20)
    kit.publish(repo, "b1", onnx_models["b"])
    assert reloaded.wait(15), "version 2 was never served"
    for t in threads:
        t.join(30)
    stop.set()
    assert failures == []
    assert versions[0] == 1 and versions[-1] == 2
    # Once a request saw version 2, the swap was done: with one stream per thread
    # the versions seen by each are monotonic, and both versions served calls.
    assert versions.count(1) >= 20 and versions.count(2) >= 30


def _publish_raw(repo: Path, branch: str, version: int, model_bytes: bytes, meta: dict) -> Path:
    """A version directory written by hand (as a buggy or foreign exporter might), renamed into place."""
    tmp = repo / branch / f".tmp-{version}"
    tmp.mkdir(parents=True)
    (tmp / "model.onnx").write_bytes(model_bytes)
    (tmp / "metadata.json").write_text(json.dumps(meta))
    final = repo / branch / str(version)
    tmp.rename(final)
    return final


def test_corrupt_or_incompatible_versions_are_refused_and_the_old_one_keeps_serving(
    start_server, repo, onnx_models, caplog
) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server()
    clip = kit.random_clips(1, seed=1)[0]
    caplog.set_level(logging.ERROR, logger="services.encoder.repository")
    before = {
        r: metric("trajlab_encoder_load_failures_total", branch="b1", reason=r)
        for r in ("corrupt", "checksum", "incompatible")
    }

    # v2: garbage bytes whose sha256 is recorded correctly -> onnxruntime refuses to parse it.
    garbage = repo.parent / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx model" * 100)
    kit.publish(repo, "b1", garbage)
    # v3: a good model file but a metadata sha256 that does not match (corrupted copy).
    meta3 = json.loads((repo / "b1" / "1" / "metadata.json").read_text())
    meta3.update(version=3, model_sha256="f" * 64)
    _publish_raw(repo, "b1", 3, onnx_models["b"].read_bytes(), meta3)
    # v4: a valid model whose input is not what the metadata says (16 frames vs 8).
    kit.publish(repo, "b1", onnx_models["b"], input={**kit.metadata("b1")["input"], "frames": 16})

    wait_for(lambda: len(srv.store.failures()) == 3)
    reasons = {v: r for _b, v, r, _m in srv.store.failures()}
    assert reasons == {2: "corrupt", 3: "checksum", 4: "incompatible"}
    for r in ("corrupt", "checksum", "incompatible"):
        assert metric("trajlab_encoder_load_failures_total", branch="b1", reason=r) == before[r] + 1
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    for v in (2, 3, 4):
        assert f"refused model b1 v{v}" in logged

    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10, retries=False) as enc:
        c = enc.classify(clip, branch="b1")
        assert c.version == 1
        assert [m.version for m in enc.list_models("b1")] == [1]
        with pytest.raises(grpc.RpcError) as e:
            enc.classify(clip, branch="b1", version=3)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "version 3 of branch 'b1' was refused at load (checksum)" in e.value.details()
    # A refused version is not retried every scan (files unchanged).
    time.sleep(0.3)
    assert (
        metric("trajlab_encoder_load_failures_total", branch="b1", reason="corrupt") == before["corrupt"] + 1
    )


def test_every_bad_input_gets_its_status_code_and_a_message_naming_the_problem(
    start_server, repo, onnx_models
) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    garbage = repo.parent / "garbage.onnx"
    garbage.write_bytes(b"junk")
    kit.publish(repo, "broken", garbage)
    srv = start_server(max_message_bytes=256 * 1024)
    good = kit.random_clips(1)[0]
    ok = array_to_clip(good, 8.0)

    def clip(**kw) -> common_pb2.Clip:  # type: ignore[no-untyped-def]
        c = common_pb2.Clip()
        c.CopyFrom(ok)
        for k, v in kw.items():
            setattr(c, k, v)
        return c

    ref = common_pb2.ModelRef
    cases = [
        (
            ref(branch="b1"),
            clip(pixels=ok.pixels[:-1]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "clip.pixels has 24575 bytes but shape",
        ),
        (ref(branch="b1"), clip(frames=0), grpc.StatusCode.INVALID_ARGUMENT, "clip.frames must be > 0"),
        (ref(branch="b1"), clip(height=0), grpc.StatusCode.INVALID_ARGUMENT, "clip.height must be > 0"),
        (
            ref(branch="b1"),
            clip(width=1_000_000),
            grpc.StatusCode.INVALID_ARGUMENT,
            "clip.width must be <= 4096",
        ),
        (
            ref(branch="b1"),
            clip(channels=2),
            grpc.StatusCode.INVALID_ARGUMENT,
            "clip.channels must be one of",
        ),
        (ref(branch="b1"), common_pb2.Clip(), grpc.StatusCode.INVALID_ARGUMENT, "clip.frames must be > 0"),
        (
            ref(branch="b1"),
            array_to_clip(np.zeros((kit.FRAMES, kit.HEIGHT, kit.WIDTH, 1), np.uint8)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects clips of frames=8 height=32 width=32 channels=3, got frames=8 height=32 width=32 channels=1",
        ),
        (
            ref(branch="b1"),
            array_to_clip(np.zeros((16, 64, 64, 3), np.uint8)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expects clips of frames=8 height=32 width=32 channels=3, got frames=16 height=64",
        ),
        (
            ref(branch=""),
            ok,
            grpc.StatusCode.INVALID_ARGUMENT,
            "model.branch is required (loaded branches: b1)",
        ),
        (ref(branch="nope"), ok, grpc.StatusCode.NOT_FOUND, "unknown branch 'nope' (loaded branches: b1)"),
        (
            ref(branch="b1", version=9),
            ok,
            grpc.StatusCode.NOT_FOUND,
            "version 9 of branch 'b1' is not loaded (loaded versions: [1]",
        ),
        (
            ref(branch="broken"),
            ok,
            grpc.StatusCode.FAILED_PRECONDITION,
            "branch 'broken' has no loadable version: v1 was refused (corrupt)",
        ),
    ]
    ch, stub = stub_for(srv.port, **{"grpc.max_send_message_length": 64 * 1024 * 1024})
    with ch:
        for model, c, code, text in cases:
            for call, req in (
                (stub.Classify, encoder_pb2.ClassifyRequest(model=model, clip=c)),
                (stub.Forecast, encoder_pb2.ForecastRequest(model=model, clip=c)),
                (stub.Analyze, encoder_pb2.AnalyzeRequest(model=model, clip=c)),
            ):
                with pytest.raises(grpc.RpcError) as e:
                    call(req, timeout=10)
                assert e.value.code() == code, (text, e.value.details())
                assert text in e.value.details()
        # Oversize: refused by the server's transport limit before any decoding, naming both sizes.
        big = array_to_clip(np.zeros((64, 64, 64, 3), np.uint8))
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(encoder_pb2.ClassifyRequest(model=ref(branch="b1"), clip=big), timeout=10)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in e.value.details() and "262144" in e.value.details()
    # The typed client refuses an oversize clip before sending it.
    with (
        EncoderClient(f"127.0.0.1:{srv.port}", max_message_bytes=256 * 1024) as enc,
        pytest.raises(InvalidClip, match="exceeds the max message size of 262144"),
    ):
        enc.classify(np.zeros((64, 64, 64, 3), np.uint8), branch="b1")
    assert (
        metric("trajlab_encoder_requests_total", method="Classify", branch="unknown", code="NOT_FOUND") >= 1
    )
    assert (
        metric("trajlab_grpc_requests_total", service="EncoderService", method="Classify", code="INTERNAL")
        == 0
    )


def test_before_any_model_calls_are_unavailable_and_the_client_retries_them(
    start_server, repo, onnx_models
) -> None:
    srv = start_server()
    clip = kit.random_clips(1)[0]
    ch, stub = stub_for(srv.port)
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(
                encoder_pb2.ClassifyRequest(model=common_pb2.ModelRef(branch="b1"), clip=array_to_clip(clip)),
                timeout=5,
            )
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "no model loaded yet" in e.value.details()
    # The typed client's service config retries UNAVAILABLE (4 attempts in all), and only that.
    before = metric("trajlab_encoder_requests_total", method="Classify", branch="unknown", code="UNAVAILABLE")
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10) as enc, pytest.raises(grpc.RpcError):
        enc.classify(clip, branch="b1")
    assert (
        metric("trajlab_encoder_requests_total", method="Classify", branch="unknown", code="UNAVAILABLE")
        == before + 4
    )
    kit.publish(repo, "b1", onnx_models["a"])
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10) as enc:
        enc.wait_until_serving(10)
        before = metric(
            "trajlab_encoder_requests_total", method="Classify", branch="b1", code="INVALID_ARGUMENT"
        )
        with pytest.raises(grpc.RpcError):
            enc.classify(np.zeros((2, 2, 2, 3), np.uint8), branch="b1")
        assert (
            metric("trajlab_encoder_requests_total", method="Classify", branch="b1", code="INVALID_ARGUMENT")
            == before + 1
        )


def test_health_is_not_serving_until_a_model_loads_and_follows_the_repository(
    start_server, repo, onnx_models
) -> None:
    srv = start_server()
    assert health_status(srv.port) == health_pb2.HealthCheckResponse.NOT_SERVING
    kit.publish(repo, "b1", onnx_models["a"])
    wait_for(lambda: health_status(srv.port) == health_pb2.HealthCheckResponse.SERVING)
    shutil.rmtree(repo / "b1")
    wait_for(lambda: health_status(srv.port) == health_pb2.HealthCheckResponse.NOT_SERVING)
    assert srv.store.models() == []


def test_overload_is_answered_resource_exhausted(start_server, repo, onnx_models) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    # A long batching window keeps the first calls in flight while the rest arrive.
    srv = start_server(max_concurrent_rpcs=2, batching=True, max_batch_size=64, max_queue_delay_ms=1000)
    clip = kit.random_clips(1)[0]
    with (
        EncoderClient(f"127.0.0.1:{srv.port}", timeout=10, retries=False) as enc,
        ThreadPoolExecutor(6) as pool,
    ):
        futs = [pool.submit(enc.classify, clip, branch="b1") for _ in range(6)]
        codes = []
        for f in futs:
            exc = f.exception()
            codes.append("OK" if exc is None else exc.code().name)  # type: ignore[attr-defined]
    assert codes.count("OK") >= 1
    assert codes.count("RESOURCE_EXHAUSTED") >= 1
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}


def test_deadlines_are_honoured_and_expired_work_is_skipped(start_server, repo, onnx_models) -> None:
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server(batching=True, max_batch_size=64, max_queue_delay_ms=1000)
    clip = kit.random_clips(1)[0]
    runs_before = metric("trajlab_encoder_batch_size_count", branch="b1")
    with EncoderClient(f"127.0.0.1:{srv.port}", retries=False) as enc:
        with pytest.raises(grpc.RpcError) as e:
            enc.classify(clip, branch="b1", timeout=0.2)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        time.sleep(1.2)  # past the batching window: the expired request must not have been run
        assert metric("trajlab_encoder_batch_size_count", branch="b1") == runs_before
        assert enc.classify(clip, branch="b1", timeout=10).version == 1


def test_the_default_layout_answers_concurrent_callers_as_onnxruntime_does(
    start_server, repo, onnx_models
) -> None:
    # Two intra-op threads and the default hybrid layout: calls that arrive together run side by
    # side, one of them on the version's one-thread session; every answer is still onnxruntime's.
    kit.publish(repo, "b1", onnx_models["a"])
    srv = start_server(intra_op_threads=2)
    clips = kit.random_clips(12, seed=7)
    ref_p, _ref_f, ref_e = direct(onnx_models["a"], clips)
    with EncoderClient(f"127.0.0.1:{srv.port}", timeout=10) as enc:
        enc.wait_until_serving(10)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda c: enc.analyze(c, branch="b1"), list(clips) * 3))
    for i, a in enumerate(answers):
        np.testing.assert_allclose(a.embedding, ref_e[i % len(clips)], rtol=1e-5, atol=1e-5)
        probs = np.array(list(a.classification.probabilities.values()))
        np.testing.assert_allclose(probs, ref_p[i % len(clips)], rtol=1e-5, atol=1e-6)

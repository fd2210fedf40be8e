"""Hostile requests: property-based fuzzing of every RPC's request message, and raw bytes.

Servers run in this process on 127.0.0.1 (encoder with a tiny model, describer
with no reachable language model, reporter with no reachable sources). For every
method of every service: any request message gets a documented status code
(never INTERNAL, never a hang past the deadline), and the server still answers
afterwards. Raw bytes (not even a protobuf) sent to every method path get
INVALID_ARGUMENT or a documented code, never INTERNAL. Example counts are bounded
so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import SERVICE_NAME as DESCRIBER_SERVICE
from services.describer.servicer import DescriberServicer
from services.describer.settings import DescriberSettings
from services.encoder.server import EncoderServer
from services.encoder.settings import EncoderSettings
from services.reporter.servicer import ReporterServicer
from services.reporter.settings import ReporterSettings
from tests.contract.encoder import kit
from tests.reliability.protostrategies import messages
from trajlab.common.v1 import common_pb2
from trajlab.config import load_settings
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.encoder.v1 import encoder_pb2
from trajlab.grpc_server import create_server
from trajlab.profiles import load_branches
from trajlab.reporter.v1 import reporter_pb2, reporter_pb2_grpc

# What trajlab/errors.py maps domain errors to, plus OK: the documented answers.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
DEADLINE = 20.0  # seconds per fuzzed call; any answer after this is a hang
FUZZ = settings(
    max_examples=40,
    deadline=None,  # wall time is the service's business here; the gRPC deadline bounds it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same examples every CI run: a failure is reproducible
)


@pytest.fixture(scope="module")
def encoder_target(tiny_onnx: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repo = tmp_path_factory.mktemp("fuzz-models")
    kit.publish(repo, "b1", tiny_onnx["a"])
    srv = EncoderServer(
        load_settings(EncoderSettings, host="127.0.0.1", port=0, metrics_port=-1, model_repo=repo,
                      poll_seconds=60, intra_op_threads=1, warmup_runs=1)
    )
    srv.start()
    assert srv.store.is_loaded("b1")
    yield f"127.0.0.1:{srv.port}"
    srv.stop(0)


@pytest.fixture(scope="module")
def describer_target() -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)
    s = load_settings(DescriberSettings, port=0)
    servicer = DescriberServicer(Router(BackendRegistry(s, {n: b.describer_backend for n, b in load_branches().items()})))
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda x: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, x)],
        service_names=[DESCRIBER_SERVICE],
        health_servicer=health.HealthServicer(),
    )
    yield f"127.0.0.1:{port}"
    server.stop(0)
    mp.undo()


@pytest.fixture(scope="module")
def reporter_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    out = tmp_path_factory.mktemp("fuzz-reports")
    s = load_settings(
        ReporterSettings, port=0, reports_dir=out / "reports", data_dir=out / "no-data",
        encoder_target="127.0.0.1:9", describer_target="127.0.0.1:9", rpc_timeout_seconds=1.0,
        prometheus_settle_seconds=0.0,
    )
    servicer = ReporterServicer(s)
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda x: reporter_pb2_grpc.add_ReporterServiceServicer_to_server(servicer, x)],
        service_names=["trajlab.reporter.v1.ReporterService"],
        health_servicer=health.HealthServicer(),
    )
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _methods(module: Any) -> list[tuple[str, Any, bool]]:
    """(full method path, request class, server-streaming?) of every method in a *_pb2 module."""
    out = []
    for service in module.DESCRIPTOR.services_by_name.values():
        for m in service.methods:
            out.append((f"/{service.full_name}/{m.name}", GetMessageClass(m.input_type), m.server_streaming))
    return out


_CLIP_BYTES = kit.FRAMES * kit.HEIGHT * kit.WIDTH * kit.CHANNELS
# A valid-shaped clip half the time, so fuzzing also reaches the model with odd pixels and fps.
_VALID_CLIP = st.builds(
    lambda px, fps: common_pb2.Clip(frames=kit.FRAMES, height=kit.HEIGHT, width=kit.WIDTH,
                                    channels=kit.CHANNELS, pixels=px, fps=fps),
    # A short random pattern tiled to the clip's size (cheap to draw and to shrink).
    st.binary(min_size=1, max_size=64).map(lambda b: (b * _CLIP_BYTES)[:_CLIP_BYTES]),
    st.one_of(st.just(kit.FPS), st.floats(allow_nan=True, allow_infinity=True)),
)
_OVERRIDES: dict[str, Any] = {
    "clip": st.one_of(_VALID_CLIP, messages(common_pb2.Clip.DESCRIPTOR, common_pb2.Clip)),
    "branch": st.one_of(st.sampled_from(["b1", "b2", "b3", "b4", ""]), st.text(max_size=30)),
    "backend": st.one_of(st.sampled_from(["analytic", "openai", "tgi:mistral", "openai:gpt-4", ""]),
                         st.text(max_size=30)),
    "describe_samples": st.integers(0, 3),
    "version": st.one_of(st.just(0), st.just(1), st.integers(0, 2**32 - 1)),  # the reporter caps nothing here; keep builds small
}


def _call(target: str, path: str, request: Message, streaming: bool) -> grpc.StatusCode:
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as ch:
        if streaming:
            stream = ch.unary_stream(path, request_serializer=lambda m: m.SerializeToString())(
                request, timeout=2.0
            )
            try:
                next(iter(stream), None)
                stream.cancel()
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()
        fn = ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString())
        try:
            fn(request, timeout=DEADLINE)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            assert exc.code() != grpc.StatusCode.INTERNAL, f"{path}: INTERNAL for {request!r}: {exc.details()}"
            return exc.code()


def _alive(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert r.status == health_pb2.HealthCheckResponse.SERVING


def _fuzz_one(
    target: str,
    path: str,
    cls: type[Message],
    streaming: bool,
    n: int,
    seen: set[str],
    overrides: dict[str, Any] | None = None,
    required: frozenset[str] = frozenset(),
) -> None:
    @settings(FUZZ, max_examples=n)
    @given(req=messages(cls.DESCRIPTOR, cls, overrides=_OVERRIDES if overrides is None else overrides,
                        required=required))
    def check(req: Message) -> None:
        code = _call(target, path, req, streaming)
        assert code in DOCUMENTED, f"{path}: {code} for {req!r}"
        seen.add(code.name)

    check()


def _fuzz_methods(target: str, module: Any, max_examples: int) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for path, cls, streaming in _methods(module):
        _fuzz_one(target, path, cls, streaming, max_examples, seen.setdefault(path, set()))
        _alive(target)
    return seen


def test_encoder_requests(encoder_target: str) -> None:
    seen = _fuzz_methods(encoder_target, encoder_pb2, max_examples=60)
    # The strategy reaches both the model and the refusals.
    assert {"OK", "INVALID_ARGUMENT"} <= seen["/trajlab.encoder.v1.EncoderService/Classify"]


def test_describer_requests(describer_target: str) -> None:
    seen = _fuzz_methods(describer_target, describer_pb2, max_examples=60)
    assert "INVALID_ARGUMENT" in seen["/trajlab.describer.v1.DescriberService/Describe"]


def test_reporter_requests(reporter_target: str) -> None:
    # A report build renders figures (about a second each): fewer examples.
    _fuzz_methods(reporter_target, reporter_pb2, max_examples=8)


@pytest.mark.parametrize("which", ["encoder", "describer", "reporter"])
def test_raw_bytes_to_every_method(which: str, request: pytest.FixtureRequest) -> None:
    """Bytes that are not a valid request message get INVALID_ARGUMENT (or a documented code)."""
    target = request.getfixturevalue(f"{which}_target")
    module = {"encoder": encoder_pb2, "describer": describer_pb2, "reporter": reporter_pb2}[which]
    paths = [p for p, _c, s in _methods(module) if not s] + ["/grpc.health.v1.Health/Check"]
    codes: set[str] = set()
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as ch:
        # Bytes that can never parse: a truncated varint, a bad wire type, a length past the end,
        # an invalid UTF-8 string in field 1; then random bytes.
        fixed = [b"\x08", b"\x0f\x01", b"\x0a\xff\xff\xff\x0f", b"\x0a\x02\xff\xfe", b"\xff" * 64]

        @settings(FUZZ, max_examples=25 if which != "reporter" else 6)
        @given(blob=st.one_of(st.sampled_from(fixed), st.binary(max_size=256)))
        def check(blob: bytes) -> None:
            for path in paths:
                if which == "reporter" and blob not in fixed and path.endswith("BuildReport"):
                    continue  # random bytes that parse would build reports: covered above
                try:
                    ch.unary_unary(path)(blob, timeout=DEADLINE)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                    detail = exc.details()
                assert code in DOCUMENTED, f"{path}: {code} for raw {blob!r}: {detail}"
                codes.add(code.name)

        check()
    assert "INVALID_ARGUMENT" in codes
    _alive(target)


def test_unknown_method_paths_are_unimplemented(encoder_target: str) -> None:
    with grpc.insecure_channel(encoder_target) as ch:
        for path in ("/trajlab.encoder.v1.EncoderService/Nope", "/../../etc/passwd", "/x"):
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary(path)(b"", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED

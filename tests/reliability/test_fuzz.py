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
from tests.reliability.protostrategies import extreme_floats, hostile_text, messages
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
MAX_DETAILS = 2000  # characters of error text: client strings are quoted shortened (issue 23)
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
    st.one_of(st.just(kit.FPS), extreme_floats(32)),
)
_OVERRIDES: dict[str, Any] = {
    "clip": st.one_of(_VALID_CLIP, messages(common_pb2.Clip.DESCRIPTOR, common_pb2.Clip)),
    "branch": st.one_of(st.sampled_from(["b1", "b2", "b3", "b4", ""]), hostile_text(30)),
    "backend": st.one_of(st.sampled_from(["analytic", "openai", "tgi:mistral", "openai:gpt-4", ""]),
                         hostile_text(30), st.builds(lambda n: f"openai:{n}", hostile_text(30))),
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
            detail = exc.details() or ""
            assert exc.code() != grpc.StatusCode.INTERNAL, f"{path}: INTERNAL for {str(request)[:500]}: {detail}"
            # An echoed oversized string shows up as a long detail, or as the client refusing
            # the trailing metadata (RESOURCE_EXHAUSTED "...metadata size exceeds...").
            assert len(detail) <= MAX_DETAILS and "metadata" not in detail, f"{path}: {detail[:300]}"
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


@st.composite
def _well_formed_describe(draw: st.DrawFn) -> describer_pb2.DescribeRequest:
    """A Describe request of valid shape whose numbers sit anywhere from tiny to extreme:
    times offset by up to ±1e13 s with steps from 1e-7 s, coordinates up to ±1e7."""
    n = draw(st.integers(3, 12))
    t0 = draw(st.one_of(st.sampled_from([0.0, 1.8e9, -3e9, 9.99e9, 1e10, 1.1e10, 1e12, 1e13]),
                        st.floats(-1e13, 1e13)))
    step = draw(st.sampled_from([1e-7, 1e-6, 1e-3, 0.125, 10.0, 1e4]))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e3, 1e6, 1e7]))
    kind = draw(st.sampled_from(["line", "arc", "noise"]))
    u = [i / (n - 1) for i in range(n)]
    if kind == "line":
        pts = [(a, -a, 0.5 * a) for a in u]
    elif kind == "arc":
        import math

        pts = [(math.cos(3 * a), math.sin(3 * a), a) for a in u]
    else:
        pts = [tuple(draw(st.floats(-1, 1)) for _ in range(3)) for _ in u]
    return describer_pb2.DescribeRequest(
        observed=[common_pb2.Point3(x=x * scale, y=y * scale, z=z * scale) for x, y, z in pts],
        observed_times=[t0 + i * step for i in range(n)],
        backend="analytic",
    )


def test_describer_extreme_but_well_formed_numbers(describer_target: str) -> None:
    """Every answer is OK or INVALID_ARGUMENT naming the range; OK answers' equations parse."""
    from trajlab.equations import parse_equations

    seen: set[str] = set()
    with grpc.insecure_channel(describer_target) as ch:
        stub = describer_pb2_grpc.DescriberServiceStub(ch)

        @settings(FUZZ, max_examples=60)
        @given(req=_well_formed_describe())
        def check(req: describer_pb2.DescribeRequest) -> None:
            try:
                resp = stub.Describe(req, timeout=DEADLINE)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{exc.code()}: {exc.details()}"
                assert "range" in exc.details() or "increase by at least" in exc.details(), exc.details()
                seen.add("INVALID_ARGUMENT")
                return
            parse_equations([resp.equations.x, resp.equations.y, resp.equations.z])
            assert "inf" not in resp.description.replace("info", ""), resp.description
            seen.add("OK")

        check()
    assert seen == {"OK", "INVALID_ARGUMENT"}


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


# -- hostile repository entry names ---------------------------------------------------------

_ENTRY_NAMES = st.one_of(
    st.sampled_from(["1", "2", "4294967295", "4294967296", "4294967297", "²", "٣", "１２", "𝟗", "01", "0",
                     "-1", "+1", "1.0", "1e3", " 7", "7 ", "9" * 300]),
    st.integers(0, 2**70).map(str),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=12),  # every kind of numeral
    st.text(min_size=1, max_size=20).filter(lambda s: "/" not in s and "\x00" not in s and s not in (".", "..")),
)


@settings(FUZZ, max_examples=150)
@given(names=st.lists(_ENTRY_NAMES, min_size=1, max_size=8, unique=True), as_file=st.booleans())
def test_repository_scan_of_any_entry_names(tmp_path_factory: pytest.TempPathFactory, names: list[str],
                                            as_file: bool) -> None:
    """scan_versions never raises; it returns exactly the canonical uint32 names, skips the rest with a reason."""
    from trajlab.modelrepo import MAX_VERSION, scan_versions

    root = tmp_path_factory.mktemp("names")
    made = []
    for name in names:
        try:
            p = root / "b1" / name
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(b"") if as_file else p.mkdir()
            made.append(name)
        except OSError:
            continue  # a name the file system refuses (too long, reserved)
    versions, skipped = scan_versions(root, "b1")
    expected = sorted(int(n) for n in made if n.isascii() and n.isdigit() and not n.startswith("0")
                      and 1 <= int(n) <= MAX_VERSION and not as_file and not n.startswith("."))
    assert versions == expected
    assert {n for n, _ in skipped} | {str(v) for v in versions} == {n for n in made if not n.startswith(".")}


# -- slow and odd upstream bodies ---------------------------------------------------------------


class _ScheduledUpstream:
    """OpenAI-compatible server replaying a schedule per request: wait before the headers,
    then the body in chunks with gaps (a trickle, a stall, a body shorter than announced)."""

    def __init__(self) -> None:
        import json as _json
        import threading
        import time as _time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.unit.describer.kit import answer_json, openai_ok

        self.body = _json.dumps(openai_ok(answer_json()).body).encode()
        self.schedule: tuple[float, int, float, bool] = (0.0, len(self.body), 0.0, False)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                head_wait, chunk, gap, truncate = outer.schedule
                _time.sleep(head_wait)
                body = outer.body
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    sent = body[: len(body) // 2] if truncate else body
                    for i in range(0, len(sent), chunk):
                        self.wfile.write(sent[i : i + chunk])
                        self.wfile.flush()
                        _time.sleep(gap)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def slow_upstream_target() -> Iterator[tuple[str, _ScheduledUpstream]]:
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)
    up = _ScheduledUpstream()
    s = load_settings(DescriberSettings, port=0, openai_base_url=up.url, openai_api_key="sk-fuzz",
                      openai_model="gpt-4o", breaker_failures=100)
    registry = BackendRegistry(s, {})
    registry.statuses()  # create the backends (SDK import) before any deadline runs
    servicer = DescriberServicer(Router(registry))
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda x: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, x)],
        service_names=[DESCRIBER_SERVICE],
    )
    yield f"127.0.0.1:{port}", up
    server.stop(0)
    up.httpd.shutdown()
    mp.undo()


@settings(FUZZ, max_examples=12)
@given(head_wait=st.sampled_from([0.0, 0.3, 3.0]), chunk=st.sampled_from([1, 7, 4096]),
       gap=st.sampled_from([0.0, 0.05, 1.0]), truncate=st.booleans())
def test_slow_upstream_bodies_never_outlive_the_deadline(
    slow_upstream_target: tuple[str, _ScheduledUpstream], head_wait: float, chunk: int, gap: float, truncate: bool
) -> None:
    """Whatever the upstream's pace, Describe answers OK before its deadline: the model's answer
    when it arrived in time, else analytic with the reason."""
    target, up = slow_upstream_target
    up.schedule = (head_wait, chunk, gap, truncate)
    tr = kit_trajectory()
    with grpc.insecure_channel(target) as ch:
        resp = describer_pb2_grpc.DescriberServiceStub(ch).Describe(
            describer_pb2.DescribeRequest(observed=tr[0], observed_times=tr[1], backend="openai"), timeout=2.0
        )
    assert resp.backend_requested == "openai:gpt-4o"
    if resp.fallback_used:
        assert resp.backend_used == "analytic" and resp.fallback_reason
    else:
        assert not truncate  # half a body is never taken for an answer


def kit_trajectory() -> tuple[list[common_pb2.Point3], list[float]]:
    from tests.unit.describer.kit import make_trajectory

    tr = make_trajectory("linear", 0)
    return [common_pb2.Point3(x=a, y=b, z=c) for a, b, c in tr.observed], tr.observed_times.tolist()

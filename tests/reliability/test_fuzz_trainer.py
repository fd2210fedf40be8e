"""Hostile requests to the trainer: every RPC's request message fuzzed, and raw bytes.

Kept apart from test_fuzz.py because the trainer was finished after the other
services. The trainer serves a tiny profile and is never started: StartTraining
is fuzzed with profile names other than the one it has (and other than the
shipped ones), so no example starts a run; each answer must be a documented code.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from hypothesis import strategies as st

from services.trainer.server import TrainerServer
from services.trainer.settings import TrainerSettings
from tests.reliability.test_fuzz import DEADLINE, DOCUMENTED, _alive, _fuzz_one, _methods
from tests.unit.trainer import kit as tkit
from trajlab.config import load_settings
from trajlab.data import build_dataset
from trajlab.trainer.v1 import trainer_pb2

# Profile names that would start (or switch) a run: never sent.
_REAL_PROFILES = {"", "quick", "seed", "tiny"}
_OVERRIDES = {
    "profile": st.one_of(st.text(max_size=40), st.sampled_from(["../../etc/passwd", "/etc/passwd", "quick.yaml",
                                                                 "a" * 300, "seed\x00", "QUICK"]))
    .filter(lambda p: p.strip() not in _REAL_PROFILES),
    "min_interval_seconds": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(-1.0), st.just(0.0)),
}


@pytest.fixture(scope="module")
def trainer_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("fuzz-trainer")
    data = build_dataset(tkit.TINY_DATASET, d / "data")
    profile = tkit.write_profile_yaml(d / "tiny.yaml", tkit.tiny_profile(epochs=1))
    server = TrainerServer(
        load_settings(
            TrainerSettings, yaml_path=None, host="127.0.0.1", port=0, metrics_port=-1, branch="b4",
            profile=str(profile), data_dir=data, run_dir=d / "run", model_repo=d / "models",
            text_cache_dir=d / "text-cache", watch_interval_seconds=0.05, grace_seconds=1.0,
        )
    )
    port = server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace_seconds=1.0)


@pytest.mark.slow
def test_trainer_requests(trainer_target: str) -> None:
    seen: dict[str, set[str]] = {}
    for path, cls, streaming in _methods(trainer_pb2):
        # An absent profile means "the configured one" and would start a run: always set it.
        _fuzz_one(trainer_target, path, cls, streaming, 30, seen.setdefault(path, set()), overrides=_OVERRIDES,
                  required=frozenset({"profile"}))
        _alive(trainer_target)
    assert "INVALID_ARGUMENT" in seen["/trajlab.trainer.v1.TrainerService/StartTraining"]
    # Nothing above started a run.
    with grpc.insecure_channel(trainer_target) as ch:
        status = ch.unary_unary(
            "/trajlab.trainer.v1.TrainerService/GetStatus",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=trainer_pb2.GetStatusResponse.FromString,
        )(trainer_pb2.GetStatusRequest(), timeout=DEADLINE)
    assert status.status.state == trainer_pb2.TRAINING_STATE_IDLE, status


@pytest.mark.slow
def test_raw_bytes_to_every_trainer_method(trainer_target: str) -> None:
    fixed = [b"\x08", b"\x0f\x01", b"\x0a\xff\xff\xff\x0f", b"\x0a\x02\xff\xfe", b"\xff" * 64]
    codes: set[str] = set()
    with grpc.insecure_channel(trainer_target, options=[("grpc.enable_retries", 0)]) as ch:
        for path, _cls, streaming in _methods(trainer_pb2):
            if path.endswith("StartTraining"):
                continue  # random bytes can decode to an empty request, which starts a run
            for blob in fixed:
                try:
                    if streaming:
                        next(iter(ch.unary_stream(path)(blob, timeout=2.0)), None)
                    else:
                        ch.unary_unary(path)(blob, timeout=DEADLINE)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    code = exc.code()
                    if code == grpc.StatusCode.DEADLINE_EXCEEDED and streaming:
                        code = grpc.StatusCode.OK  # a healthy watch stream that had nothing new to say
                assert code in DOCUMENTED, f"{path}: {code} for raw {blob!r}"
                codes.add(code.name)
    assert "INVALID_ARGUMENT" in codes
    _alive(trainer_target)

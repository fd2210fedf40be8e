"""The describer over gRPC against a fake OpenAI-compatible server (what vLLM serves in compose's
local-llm profile): each model at its own base URL, the API's usage in DescribeResponse.usage,
priced when the price table has the backend, and the reporter's source reading it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import SERVICE_NAME, DescriberServicer
from services.describer.settings import DescriberSettings
from services.reporter.model import ValidationSet
from services.reporter.sources.grpc_sources import DescriberSource
from tests.unit.describer.kit import N_OBSERVED, ScriptedServer, answer_json, make_trajectory, openai_ok
from trajlab.common.v1 import common_pb2
from trajlab.config import load_settings
from trajlab.describer.v1 import describer_pb2, describer_pb2_grpc
from trajlab.grpc_server import create_server
from trajlab.profiles import CLASS_NAMES

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-local-vllm-0123456789"
BRANCHES = {"b1": "openai:gpt-4", "b3": "tgi:mistral", "b4": "tgi:phi-2"}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ScriptedServer]]:
    out = {
        "mistral": ScriptedServer([openai_ok(answer_json(), prompt_tokens=412, completion_tokens=96)]),
        "phi-2": ScriptedServer(
            [openai_ok(answer_json(motion="circular"), prompt_tokens=380, completion_tokens=70)]
        ),
        "gpt-4": ScriptedServer([openai_ok(answer_json(), prompt_tokens=300, completion_tokens=100)]),
    }
    yield out
    for s in out.values():
        s.close()


@pytest.fixture(scope="module")
def target(servers: dict[str, ScriptedServer]) -> Iterator[str]:
    mp = pytest.MonkeyPatch()
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        mp.delenv(var, raising=False)
    settings = load_settings(
        DescriberSettings,
        port=0,
        openai_api_key=KEY,
        openai_base_url=f"{servers['gpt-4'].url}/v1",
        openai_base_urls={m: f"{servers[m].url}/v1" for m in ("mistral", "phi-2")},
        # compose's local-llm profile: b3 and b4 answered by vLLM through the openai backend
        branch_backends={"b3": "openai:mistral", "b4": "openai:phi-2"},
        prices={"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}},
    )
    servicer = DescriberServicer(Router(BackendRegistry(settings, settings.branch_defaults(BRANCHES))))
    server, port = create_server(
        "127.0.0.1:0",
        registrations=[lambda s: describer_pb2_grpc.add_DescriberServiceServicer_to_server(servicer, s)],
        service_names=[SERVICE_NAME],
        health_servicer=health.HealthServicer(),
    )
    yield f"127.0.0.1:{port}"
    server.stop(0)
    mp.undo()


def _validation() -> ValidationSet:
    tr = make_trajectory("linear", 3)
    return ValidationSet(
        clips=np.zeros((1, N_OBSERVED, 8, 8, 3), np.uint8),
        labels=np.array([CLASS_NAMES.index("linear")]),
        positions=tr.positions[None].astype(np.float32),
        times=tr.times.astype(np.float32),
        extent=np.array([tr.extent], np.float32),
        fps=8.0,
        class_names=tuple(CLASS_NAMES),
    )


def test_local_models_answer_with_their_usage_unpriced(
    target: str, servers: dict[str, ScriptedServer]
) -> None:
    source = DescriberSource(target, timeout_seconds=20.0)
    val = _validation()
    s3 = source.describe("b3", val, 0, predicted_class=None, forecast=None, forecast_times=None)
    s4 = source.describe("b4@s1", val, 0, predicted_class=None, forecast=None, forecast_times=None)
    assert not s3.error and not s3.fallback_used, s3.fallback_reason
    assert s3.backend_used == "openai:mistral" and s4.backend_used == "openai:phi-2"
    assert (s3.prompt_tokens, s3.completion_tokens, s3.llm_attempts) == (412, 96, 1)
    assert (s4.prompt_tokens, s4.completion_tokens) == (380, 70)
    assert s3.llm_seconds > 0 and s3.cost is None  # a local model: GPU time, not money
    assert s3.described_class == "linear" and s4.described_class == "circular"
    # Each model at its own server, named as vLLM serves it, with the operator's key.
    assert [r.body["model"] for r in servers["mistral"].requests] == ["mistral"]
    assert [r.body["model"] for r in servers["phi-2"].requests] == ["phi-2"]
    assert servers["mistral"].requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_priced_backend_answers_with_its_cost(target: str) -> None:
    tr = make_trajectory("linear", 1)
    req = describer_pb2.DescribeRequest(
        observed=[common_pb2.Point3(x=p[0], y=p[1], z=p[2]) for p in tr.observed],
        observed_times=list(tr.observed_times),
        branch="b1",
    )
    with grpc.insecure_channel(target) as ch:
        resp = describer_pb2_grpc.DescriberServiceStub(ch).Describe(req, timeout=20.0)
    assert resp.backend_used == "openai:gpt-4" and not resp.fallback_used
    u = resp.usage
    assert (u.backend, u.attempts, u.prompt_tokens, u.completion_tokens) == ("openai:gpt-4", 1, 300, 100)
    assert u.priced and u.cost == pytest.approx((300 * 0.03 + 100 * 0.06) / 1000)
    assert u.seconds > 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {
                "TRAJLAB_DESCRIBER_PRICES": '{"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": -0.06}}'
            },
            "prices.openai:gpt-4.completion_per_1k",
        ),
        (
            {"TRAJLAB_DESCRIBER_PRICES": '{"gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}'},
            "'gpt-4'",
        ),
        (
            {"TRAJLAB_DESCRIBER_BRANCH_BACKENDS": '{"b9": "openai:mistral"}'},
            "branch_backends: unknown branch",
        ),
    ],
)
def test_python_m_services_describer_refuses_bad_cost_settings_at_start(
    env: dict[str, str], named: str
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRAJLAB_", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "services.describer"],
        cwd=ROOT,
        env={**base, "TRAJLAB_DESCRIBER_PORT": "0", "TRAJLAB_DESCRIBER_METRICS_PORT": "-1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert named in proc.stdout + proc.stderr

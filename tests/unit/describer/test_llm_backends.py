"""OpenAI and TGI backends against local servers speaking those APIs; routing falls back
to analytic with the right reason each time, and says so."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.describer.backends.base import Trajectory
from services.describer.router import BackendRegistry, Router
from services.describer.settings import DescriberSettings
from tests.unit.describer.conftest import BRANCHES, TEST_KEY, RouterFactory
from tests.unit.describer.kit import (
    OPENAI_429,
    OPENAI_500,
    TGI_422,
    TGI_424,
    TGI_429,
    TGI_500,
    Reply,
    ScriptedServer,
    answer_json,
    openai_error,
    openai_ok,
    scripted,
    tgi_ok,
)
from trajlab.config import load_settings

GOOD = answer_json()


def _openai_router(make_router: RouterFactory, url: str, **kw):
    return make_router(openai_base_url=f"{url}/v1", openai_api_key=TEST_KEY, **kw)


@dataclass
class Env:
    """One fake server and one router shared by a module's tests: building an OpenAI
    client costs ~0.2 s (TLS context), so tests re-script the server instead."""

    srv: ScriptedServer
    router: Router
    sleeps: list[float]

    def script(self, *replies: Reply) -> ScriptedServer:
        self.sleeps.clear()
        return self.srv.script(*replies)


@pytest.fixture(scope="module")
def oa() -> Iterator[Env]:
    srv = ScriptedServer([openai_ok(GOOD)])
    sleeps: list[float] = []
    settings = load_settings(
        DescriberSettings,
        openai_base_url=f"{srv.url}/v1",
        openai_api_key=TEST_KEY,
        retry_backoff_seconds=0.01,
        breaker_failures=100,  # these tests look at single calls, not at the breaker
    )
    yield Env(srv, Router(BackendRegistry(settings, BRANCHES), sleep=sleeps.append), sleeps)
    srv.close()


@pytest.fixture(scope="module")
def tg() -> Iterator[Env]:
    srv = ScriptedServer([tgi_ok(GOOD)])
    sleeps: list[float] = []
    settings = load_settings(
        DescriberSettings,
        tgi_endpoints={"mistral": srv.url, "phi-2": srv.url},
        retry_backoff_seconds=0.01,
        breaker_failures=100,
    )
    yield Env(srv, Router(BackendRegistry(settings, BRANCHES), sleep=sleeps.append), sleeps)
    srv.close()


# -- OpenAI -------------------------------------------------------------------------------


def test_openai_good_answer_uses_structured_output(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(openai_ok(GOOD))
    res = oa.router.describe(trajectory, backend="openai")
    assert not res.fallback_used and res.fallback_reason == ""
    assert res.backend_requested == res.backend_used == "openai:gpt-4"
    d = res.description
    assert d.equations == ("1 + 0.5*t", "2 - 0.3*t", "5 + 0.2*t")
    assert d.model == "gpt-4" and d.prompt_version == "openai/v1"
    assert (d.prompt_tokens, d.completion_tokens) == (321, 87)
    req = srv.requests[0]
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {TEST_KEY}"
    body = req.body
    assert body["model"] == "gpt-4"
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert set(schema["schema"]["required"]) == {"x", "y", "z", "motion", "description"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "t=0.0000" in body["messages"][1]["content"]  # the observed points are in the prompt


def test_openai_json_object_mode_for_models_without_structured_outputs(
    make_router: RouterFactory, trajectory: Trajectory
) -> None:
    with scripted(openai_ok(GOOD)) as srv:
        res = _openai_router(
            make_router, srv.url, openai_structured_output="json_object", openai_models=["llama3"]
        ).describe(
            trajectory, backend="openai:llama3"
        )
    assert res.backend_used == "openai:llama3" and srv.requests[0].body["model"] == "llama3"
    assert srv.requests[0].body["response_format"] == {"type": "json_object"}


def test_no_key_falls_back_without_calling(make_router: RouterFactory, trajectory: Trajectory) -> None:
    with scripted(openai_ok(GOOD)) as srv:
        res = make_router(openai_base_url=f"{srv.url}/v1").describe(trajectory, branch="b1")
    assert res.fallback_used and res.backend_used == "analytic" and res.backend_requested == "openai:gpt-4"
    assert res.fallback_kind == "not_configured" and "OPENAI_API_KEY" in res.fallback_reason
    assert srv.requests == []
    assert res.description.described_class == "linear"  # analytic answered


def test_key_from_secret_file_and_env(
    make_router: RouterFactory, trajectory: Trajectory, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "openai_api_key"
    key_file.write_text("sk-from-file\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with scripted(openai_ok(GOOD)) as srv:
        make_router(openai_base_url=f"{srv.url}/v1", openai_api_key_file=key_file).describe(
            trajectory, backend="openai"
        )
        make_router(openai_base_url=f"{srv.url}/v1").describe(trajectory, backend="openai")
    assert [r.headers["authorization"] for r in srv.requests] == ["Bearer sk-from-file", "Bearer sk-from-env"]


def test_timeout_follows_the_budget_and_falls_back(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(Reply(delay=10.0, body=openai_ok(GOOD).body))
    res = oa.router.describe(trajectory, backend="openai", time_remaining=0.6)
    assert res.fallback_used and res.fallback_kind == "timeout"
    assert len(srv.requests) == 1  # a timeout is not retried: the deadline is spent


def test_429_then_success_is_retried_once_honouring_retry_after(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(OPENAI_429, openai_ok(GOOD))
    res = oa.router.describe(trajectory, backend="openai")
    assert not res.fallback_used and res.backend_used == "openai:gpt-4"
    assert len(srv.requests) == 2  # one retry layer: ours; the SDK's own retries are off
    assert oa.sleeps == [pytest.approx(0.02)]  # retry-after-ms: 20


def test_500_falls_back_after_one_retry(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(OPENAI_500)
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_used and res.fallback_kind == "server_error" and "HTTP 500" in res.fallback_reason
    assert len(srv.requests) == 2


def test_429_twice_falls_back_as_rate_limited(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(OPENAI_429)
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_kind == "rate_limited" and len(srv.requests) == 2


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ('{"x": "t", "y": ', "schema"),  # malformed JSON
        ("Sure! Here is the equation: x = t", "schema"),
        (answer_json(motion="spiral"), "schema"),
        ('{"x": "t", "y": "t", "motion": "linear", "description": "no z"}', "schema"),
        (answer_json(extra_field="surprise"), "schema"),
        (answer_json(x=7), "schema"),
        (answer_json(x="__import__('os').system('rm -rf /')"), "unsafe_equation"),
        (answer_json(y="t.__class__.__mro__"), "unsafe_equation"),
        (answer_json(z="9**9**9**9"), "unsafe_equation"),
        (None, "schema"),
    ],
)
def test_bad_answers_fall_back_with_the_reason(
    oa: Env, trajectory: Trajectory, content: str | None, kind: str
) -> None:
    srv = oa.script(openai_ok(content))
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_used and res.fallback_kind == kind, res.fallback_reason
    assert len(srv.requests) == 1  # a bad answer is not retried
    assert res.backend_used == "analytic"


def test_refusal_and_truncation_are_schema_failures(oa: Env, trajectory: Trajectory) -> None:
    oa.script(openai_ok(None, refusal="I can't help with that."), openai_ok(GOOD, finish_reason="length"))
    a = oa.router.describe(trajectory, backend="openai")
    b = oa.router.describe(trajectory, backend="openai")
    assert a.fallback_kind == "schema" and "refused" in a.fallback_reason
    assert b.fallback_kind == "schema" and "cut off" in b.fallback_reason


def test_malformed_http_body_is_a_server_error(oa: Env, trajectory: Trajectory) -> None:
    srv = oa.script(Reply(200, "<html>502 Bad Gateway</html>"))
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_used and res.fallback_kind == "server_error"
    assert len(srv.requests) == 1  # not the API's body at all: not retried


def test_refused_key_is_never_echoed_or_logged(
    oa: Env, trajectory: Trajectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = openai_error(
        401, f"Incorrect API key provided: {TEST_KEY}.", "invalid_request_error", "invalid_api_key"
    )
    srv = oa.script(reply)
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_kind == "client_error" and "401" in res.fallback_reason
    assert TEST_KEY not in res.fallback_reason
    assert all(TEST_KEY not in r.getMessage() for r in caplog.records)
    assert len(srv.requests) == 1  # 4xx is not retried


def test_unreachable_endpoint(make_router: RouterFactory, trajectory: Trajectory) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = _openai_router(make_router, f"http://127.0.0.1:{port}").describe(trajectory, backend="openai")
    assert res.fallback_used and res.fallback_kind == "unreachable"


# -- TGI ----------------------------------------------------------------------------------


def test_tgi_mistral_good_answer_with_grammar(tg: Env, trajectory: Trajectory) -> None:
    srv = tg.script(tgi_ok(GOOD, tokens=55))
    res = tg.router.describe(trajectory, branch="b3")
    assert not res.fallback_used and res.backend_used == "tgi:mistral"
    assert res.description.prompt_version == "mistral/v1" and res.description.completion_tokens == 55
    body = srv.requests[0].body
    assert body["inputs"].startswith("[INST]") and body["inputs"].endswith("[/INST]")
    params = body["parameters"]
    assert params["grammar"]["type"] == "json"
    assert params["grammar"]["value"]["required"] == ["x", "y", "z", "motion", "description"]
    assert params["do_sample"] is False


def test_tgi_phi2_uses_instruct_output_prompt(tg: Env, trajectory: Trajectory) -> None:
    srv = tg.script(tgi_ok(GOOD))
    res = tg.router.describe(trajectory, branch="b4")
    assert res.backend_used == "tgi:phi-2" and res.description.prompt_version == "phi/v1"
    prompt = srv.requests[0].body["inputs"]
    assert prompt.startswith("Instruct: ") and prompt.endswith("\nOutput:")


@pytest.mark.parametrize(
    ("replies", "kind", "calls"),
    [
        ([TGI_429, tgi_ok(GOOD)], "", 2),  # overloaded, then success: retried
        ([TGI_429], "rate_limited", 2),
        ([TGI_500], "server_error", 2),
        ([TGI_424], "server_error", 2),
        ([TGI_422], "client_error", 1),
        ([Reply(200, "<html>oops</html>")], "server_error", 1),  # body is not JSON: not TGI
        ([Reply(200, [{"unexpected": 1}])], "server_error", 1),
        ([tgi_ok('{"x": "t", "y": "t"')], "schema", 1),
        ([tgi_ok(answer_json(description=None))], "schema", 1),
        ([tgi_ok(answer_json(z="open('/etc/passwd')"))], "unsafe_equation", 1),
        ([tgi_ok(GOOD, finish="length")], "schema", 1),
    ],
)
def test_tgi_failures_fall_back_with_the_reason(
    tg: Env, trajectory: Trajectory, replies: list[Reply], kind: str, calls: int
) -> None:
    srv = tg.script(*replies)
    res = tg.router.describe(trajectory, backend="tgi:mistral")
    assert res.fallback_kind == kind, res.fallback_reason
    assert res.fallback_used == bool(kind)
    assert len(srv.requests) == calls


def test_tgi_timeout(tg: Env, trajectory: Trajectory) -> None:
    srv = tg.script(Reply(delay=10.0, body=tgi_ok(GOOD).body))
    res = tg.router.describe(trajectory, backend="tgi:phi-2", time_remaining=0.4)
    assert res.fallback_kind == "timeout" and len(srv.requests) == 1


def test_tgi_without_endpoint_is_not_configured(make_router: RouterFactory, trajectory: Trajectory) -> None:
    res = make_router().describe(trajectory, branch="b3")
    assert res.fallback_kind == "not_configured" and "tgi:mistral" in res.fallback_reason


def test_a_long_retry_after_falls_back_at_once(oa: Env, trajectory: Trajectory) -> None:
    slow = openai_error(429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after": "30"})
    srv = oa.script(slow, openai_ok(GOOD))
    res = oa.router.describe(trajectory, backend="openai")
    assert res.fallback_kind == "rate_limited" and len(srv.requests) == 1 and oa.sleeps == []


def test_only_the_operators_openai_models_are_served(make_router: RouterFactory) -> None:
    from trajlab.errors import NotFound

    reg = make_router(openai_models=["gpt-4o"]).registry
    for i in range(40):  # invented names never lock anyone out: they are simply unknown
        with pytest.raises(NotFound, match="not enabled"):
            reg.resolve(f"openai:model-{i}")
    assert reg.resolve("openai:gpt-4o") == "openai:gpt-4o"
    assert reg.resolve("openai") == "openai:gpt-4"  # the configured default model is always allowed


def test_structured_output_mode_for_legacy_openai_models() -> None:
    from services.describer.backends.openai_backend import structured_output_mode as mode

    assert mode("auto", model="gpt-4", base_url=None) == "none"  # gpt-4 refuses response_format
    assert mode("auto", model="gpt-4-0613", base_url=None) == "none"
    assert mode("auto", model="gpt-4o", base_url=None) == "json_schema"
    assert mode("auto", model="gpt-4-turbo", base_url=None) == "json_schema"
    assert mode("auto", model="gpt-4", base_url="http://vllm:8000/v1") == "json_schema"  # any model there
    assert mode("json_object", model="gpt-4o", base_url=None) == "json_object"


def test_prompt_only_mode_puts_the_schema_in_the_prompt(
    make_router: RouterFactory, trajectory: Trajectory
) -> None:
    with scripted(openai_ok(GOOD)) as srv:
        res = _openai_router(make_router, srv.url, openai_structured_output="none").describe(
            trajectory, backend="openai"
        )
    assert not res.fallback_used
    body = srv.requests[0].body
    assert "response_format" not in body
    assert '"required": ["x", "y", "z", "motion", "description"]' in body["messages"][0]["content"]

"""One OpenAI-compatible server per model (vLLM serves one model each): the describer's
openai backend reaches each model at its own base URL (the Kubernetes local-llm overlay)."""

from __future__ import annotations

import pytest

from services.describer.router import BackendRegistry, Router
from services.describer.settings import DescriberSettings
from tests.unit.describer.conftest import TEST_KEY
from tests.unit.describer.kit import ScriptedServer, answer_json, openai_ok
from trajlab.config import load_settings
from trajlab.errors import ConfigError

LOCAL = {"b1": "analytic", "b2": "analytic", "b3": "openai:mistral", "b4": "openai:phi-2"}


def test_each_model_goes_to_its_own_server(trajectory) -> None:
    mistral, phi = ScriptedServer([openai_ok(answer_json())]), ScriptedServer([openai_ok(answer_json())])
    try:
        settings = load_settings(
            DescriberSettings,
            openai_api_key=TEST_KEY,
            openai_base_urls={"mistral": f"{mistral.url}/v1", "phi-2": f"{phi.url}/v1"},
        )
        router = Router(BackendRegistry(settings, LOCAL), sleep=lambda _s: None)
        r3 = router.describe(trajectory, branch="b3")
        r4 = router.describe(trajectory, branch="b4")
        assert not r3.fallback_used and not r4.fallback_used, (r3.fallback_reason, r4.fallback_reason)
        assert [r.body["model"] for r in mistral.requests] == ["mistral"]
        assert [r.body["model"] for r in phi.requests] == ["phi-2"]
        assert mistral.requests[0].path == phi.requests[0].path == "/v1/chat/completions"
    finally:
        mistral.close()
        phi.close()


def test_a_base_url_that_is_not_http_names_the_model() -> None:
    with pytest.raises(ConfigError, match=r"openai_base_urls.*'phi-2' must be an http"):
        load_settings(DescriberSettings, openai_base_urls={"phi-2": "vllm-phi2:8000"})

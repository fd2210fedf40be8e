"""Describer settings: bad values stop the start with the field named; keys stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.describer.settings import DescriberSettings
from trajlab.config import load_settings
from trajlab.errors import ConfigError


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"tgi_endpoints": {"mistral": "tgi-mistral:80"}}, "tgi_endpoints"),
        ({"openai_base_url": "localhost:8000/v1"}, "openai_base_url"),
        ({"breaker_failures": 0}, "breaker_failures"),
        ({"openai_structured_output": "xml"}, "openai_structured_output"),
        ({"retries": 9}, "retries"),
    ],
)
def test_bad_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_settings(DescriberSettings, **overrides)


def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_DESCRIBER_TGI_ENDPOINTS", '{"mistral": "http://tgi-mistral:80"}')
    monkeypatch.setenv("TRAJLAB_DESCRIBER_OPENAI_MODEL", "gpt-4o")
    s = load_settings(DescriberSettings)
    assert s.port == 50053 and s.openai_model == "gpt-4o"
    assert s.tgi_endpoints == {"mistral": "http://tgi-mistral:80"}
    assert s.tgi_families["phi-2"] == "phi"


def test_key_sources_in_order_and_never_in_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert load_settings(DescriberSettings).resolve_openai_key().get_secret_value() == "sk-env"
    s = load_settings(DescriberSettings, openai_api_key="sk-setting")
    assert s.resolve_openai_key().get_secret_value() == "sk-setting"
    assert "sk-setting" not in repr(s) and "sk-setting" not in str(s.model_dump())
    f = tmp_path / "key"
    f.write_text("sk-file\n")
    s = load_settings(DescriberSettings, openai_api_key="sk-setting", openai_api_key_file=f)
    assert s.resolve_openai_key().get_secret_value() == "sk-file"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert (
        load_settings(DescriberSettings, openai_api_key_file=tmp_path / "missing").resolve_openai_key()
        is None
    )


def test_openai_model_allow_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_DESCRIBER_OPENAI_MODELS", '["gpt-4o", "gpt-4o-mini"]')
    s = load_settings(DescriberSettings)
    assert s.allowed_openai_models() == ["gpt-4", "gpt-4o", "gpt-4o-mini"]  # the default model always
    monkeypatch.delenv("TRAJLAB_DESCRIBER_OPENAI_MODELS")
    assert load_settings(DescriberSettings).allowed_openai_models() == ["gpt-4"]


def test_upstream_calls_must_leave_workers_free() -> None:
    with pytest.raises(ConfigError, match="upstream_max_calls"):
        load_settings(DescriberSettings, upstream_max_calls=8, max_workers=8)

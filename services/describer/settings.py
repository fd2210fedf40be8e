"""Describer settings: env ``TRAJLAB_DESCRIBER_<FIELD>``, YAML via ``TRAJLAB_CONFIG``.

The OpenAI key is read from, in order: the file named by ``openai_api_key_file``
(e.g. a Docker secret), ``TRAJLAB_DESCRIBER_OPENAI_API_KEY``, ``OPENAI_API_KEY``.
It is held as a SecretStr and never logged. TGI endpoints are a mapping from the
model name used in requests ("mistral", "phi-2") to the container's base URL, e.g.
``TRAJLAB_DESCRIBER_TGI_ENDPOINTS='{"mistral": "http://tgi-mistral:80"}'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from services.describer.usage import Price, check_price_keys
from trajlab.config import ServerSettings


class DescriberSettings(ServerSettings):
    """Settings of ``python -m services.describer``."""

    model_config = SettingsConfigDict(
        env_prefix="TRAJLAB_DESCRIBER_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    port: int = 50053  # gRPC port
    branches_file: Path | None = None  # branch configs; None = trajlab/configs/branches.yaml
    default_backend: str = "analytic"  # used when neither the request nor its branch names one

    # OpenAI (or any OpenAI-compatible server: vLLM, Ollama, TGI's /v1).
    openai_model: str = "gpt-4"  # model behind the bare name "openai"
    # Models a request may name as "openai:<model>" (each call spends the operator's key);
    # None = only openai_model. JSON list in the environment: '["gpt-4o", "gpt-4o-mini"]'.
    openai_models: list[str] | None = None
    openai_base_url: str | None = None  # None = the SDK's default (api.openai.com)
    # Per-model base URLs, for one OpenAI-compatible server per model (vLLM serves one each):
    # {"mistral": "http://vllm-mistral:8000/v1", "phi-2": "http://vllm-phi2:8000/v1"}; other
    # models use openai_base_url.
    openai_base_urls: dict[str, str] = Field(default_factory=dict)
    openai_api_key: SecretStr | None = None  # prefer openai_api_key_file or OPENAI_API_KEY
    openai_api_key_file: Path | None = None  # file holding the key (Docker secret)
    openai_timeout_seconds: float = Field(30.0, gt=0)  # per call, capped by the request deadline
    # How the JSON answer is requested: "json_schema" (structured outputs), "json_object"
    # (JSON mode), "none" (schema in the prompt only), or "auto": json_schema, except
    # "none" for OpenAI's own legacy models that refuse response_format (gpt-4, gpt-4-0613,
    # gpt-4-32k, gpt-3.5-turbo-0613). The answer is checked against the schema either way.
    openai_structured_output: Literal["auto", "json_schema", "json_object", "none"] = "auto"
    openai_max_tokens: int = Field(600, ge=64, le=8192)  # completion tokens per answer

    # text-generation-inference containers, by model name.
    tgi_endpoints: dict[str, str] = Field(default_factory=dict)  # {"mistral": "http://host:port"}
    tgi_families: dict[str, Literal["mistral", "phi"]] = Field(
        default_factory=lambda: {"mistral": "mistral", "phi-2": "phi"}
    )  # prompt family per model name; names starting with "phi" default to "phi", others to "mistral"
    tgi_timeout_seconds: float = Field(60.0, gt=0)  # per call, capped by the request deadline
    tgi_max_new_tokens: int = Field(600, ge=64, le=8192)

    prompt_version: str = "v1"  # prompts/<family>/<version>.txt

    # Token prices per backend, per 1,000 tokens, in one currency of the operator's choice:
    # '{"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}' (or a mapping
    # under prices: in the TRAJLAB_CONFIG YAML). None built in; local models (vLLM, TGI) are
    # shown by the GPU time of their calls instead.
    prices: dict[str, Price] = Field(default_factory=dict)
    # Per-branch describer backend overriding the branches file's describer_backend, e.g.
    # '{"b3": "openai:mistral", "b4": "openai:phi-2"}' (compose's local-llm profile: vLLM).
    branch_backends: dict[str, str] = Field(default_factory=dict)

    # Routing: one retry layer (ours; the SDKs' own retries are switched off).
    retries: int = Field(1, ge=0, le=3)  # extra attempts after a 429 or 5xx, within the deadline
    retry_backoff_seconds: float = Field(0.5, ge=0.0, le=30.0)  # wait before a retry without Retry-After
    breaker_failures: int = Field(3, ge=1, le=100)  # consecutive failures that open a backend's circuit
    breaker_reset_seconds: float = Field(30.0, gt=0)  # open -> half-open (one probe) after this pause
    fallback_reserve_seconds: float = Field(0.25, ge=0.0, le=5.0)  # deadline kept for the fallback + reply
    # Outbound language-model calls in flight at once (backends.upstream); a call finding
    # every slot taken falls back at once. Below max_workers, so slow upstreams can never
    # hold every gRPC handler.
    upstream_max_calls: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _upstream_below_workers(self) -> DescriberSettings:
        if self.upstream_max_calls >= self.max_workers:
            raise ValueError(
                f"upstream_max_calls ({self.upstream_max_calls}) must be below max_workers "
                f"({self.max_workers}): analytic calls and fallbacks need a worker while upstreams are slow"
            )
        return self

    def allowed_openai_models(self) -> list[str]:
        """The OpenAI models requests may name: ``openai_models``, else ``openai_model`` alone."""
        models = self.openai_models if self.openai_models is not None else [self.openai_model]
        return list(dict.fromkeys([self.openai_model, *models]))

    @field_validator("tgi_endpoints")
    @classmethod
    def _urls(cls, v: dict[str, str]) -> dict[str, str]:
        for name, url in v.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint of {name!r} must be an http(s):// URL, got {url!r}")
        return v

    @field_validator("prices")
    @classmethod
    def _price_keys(cls, v: dict[str, Price]) -> dict[str, Price]:
        return check_price_keys(v)

    @field_validator("openai_base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s):// URL, got {v!r}")
        return v

    @field_validator("openai_base_urls")
    @classmethod
    def _base_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for name, url in v.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base URL of {name!r} must be an http(s):// URL, got {url!r}")
        return v

    def file_backends(self) -> dict[str, str]:
        """Each known branch's ``describer_backend``: the seed branches', then ``branches_file``'s
        (a branch of the same name: the file's). The file extends the seed set instead of replacing
        it, so a report comparing custom branches with seed ones is described in full."""
        from trajlab.profiles import load_branches

        found = {name: b.describer_backend for name, b in load_branches().items()}
        if self.branches_file is not None:
            found.update({name: b.describer_backend for name, b in load_branches(self.branches_file).items()})
        return found

    def branch_defaults(self, from_branches: dict[str, str]) -> dict[str, str]:
        """Each branch's default backend: the branches file's, overridden by ``branch_backends``.

        Raises ValueError naming ``branch_backends`` for a branch the file does not have.
        """
        unknown = sorted(set(self.branch_backends) - set(from_branches))
        if unknown:
            raise ValueError(
                f"branch_backends: unknown branch(es) {', '.join(map(repr, unknown))}; "
                f"the branches file has {', '.join(sorted(from_branches))}"
            )
        return {**from_branches, **self.branch_backends}

    def resolve_openai_key(self) -> SecretStr | None:
        """The OpenAI key from file, setting or OPENAI_API_KEY; None when there is none."""
        if self.openai_api_key_file is not None:
            try:
                text = self.openai_api_key_file.read_text(encoding="utf-8").strip()
            except OSError:
                text = ""
            if text:
                return SecretStr(text)
        if self.openai_api_key is not None and self.openai_api_key.get_secret_value().strip():
            return self.openai_api_key
        env = os.environ.get("OPENAI_API_KEY", "").strip()
        return SecretStr(env) if env else None

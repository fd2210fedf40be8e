"""The OpenAI backend: chat completions with structured output, through the official SDK.

Works with api.openai.com and with OpenAI-compatible servers (vLLM, Ollama, TGI's
``/v1``) through ``base_url``. The SDK's own retries are switched off
(``max_retries=0``): the router is the one retry layer, because it knows the
request's deadline and treats every backend alike. The per-call timeout is the
router's budget, which follows the gRPC deadline; ``upstream``
(``deadline_transport``) makes it a total deadline (a body trickling in a byte at a time is cut off).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from services.describer.backends.base import BackendError, Description, FailureKind, Trajectory
from services.describer.backends.llm import ANSWER_SCHEMA, description_from_answer, render_prompt
from services.describer.backends.upstream import deadline_transport

log = logging.getLogger(__name__)


def _openai_schema() -> dict[str, Any]:
    # OpenAI's strict structured outputs do not accept maxLength; the answer is
    # still checked against the full schema (lengths included) when it comes back.
    props = {
        k: {kk: vv for kk, vv in v.items() if kk != "maxLength"}  # type: ignore[union-attr]
        for k, v in ANSWER_SCHEMA["properties"].items()
    }  # type: ignore[union-attr]
    return {**ANSWER_SCHEMA, "properties": props}


# OpenAI's own models that reject any response_format (they predate JSON mode).
_LEGACY_MODELS = re.compile(r"^(gpt-4(-0314|-0613)?|gpt-4-32k.*|gpt-3\.5-turbo-(0301|0613|16k.*))$")


def structured_output_mode(setting: str, *, model: str, base_url: str | None) -> str:
    """The response_format mode for a model: see ``DescriberSettings.openai_structured_output``.

    "auto" only downgrades on api.openai.com (no base_url): vLLM, Ollama and TGI enforce
    a json_schema for any model they serve.
    """
    if setting != "auto":
        return setting
    if base_url is None and _LEGACY_MODELS.match(model):
        return "none"
    return "json_schema"


def _retry_after(exc: Any) -> float | None:
    """Seconds from Retry-After(-ms) headers of an SDK status error, if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    for key, div in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        val = headers.get(key)
        if val is not None:
            try:
                return max(0.0, float(val) / div)
            except ValueError:
                continue
    return None


class OpenAIBackend:
    """``openai:<model>`` behind the backend interface."""

    kind = "openai"

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: Callable[[], SecretStr | None],
        structured_output: str = "auto",
        max_tokens: int = 600,
        prompt_version: str = "v1",
    ) -> None:
        self.model = model
        self.name = f"openai:{model}"
        self.endpoint = base_url or "https://api.openai.com/v1"
        self._base_url = base_url
        self._api_key = api_key
        self.structured_output = structured_output_mode(structured_output, model=model, base_url=base_url)
        self._max_tokens = max_tokens
        self._prompt_version = prompt_version
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_key_hash = ""
        if api_key() is not None:
            # Import the SDK now (seconds on a busy machine), not inside a request's budget.
            import openai  # noqa: F401

    def configured(self) -> tuple[bool, str]:
        if self._api_key() is None:
            return (
                False,
                "no OPENAI_API_KEY (set it, TRAJLAB_DESCRIBER_OPENAI_API_KEY or openai_api_key_file)",
            )
        return True, f"model {self.model} at {self.endpoint}, response format {self.structured_output}"

    def _get_client(self, key: SecretStr) -> Any:
        import openai

        # One client (and HTTP connection pool) per key; a rotated secret file gets a new one.
        digest = hashlib.sha256(key.get_secret_value().encode()).hexdigest()
        with self._lock:
            if self._client is None or digest != self._client_key_hash:
                self._client = openai.OpenAI(
                    api_key=key.get_secret_value(),
                    base_url=self._base_url,
                    max_retries=0,
                    # A total deadline on the body too, not only connect and read-gap timeouts.
                    http_client=openai.DefaultHttpxClient(transport=deadline_transport(_sdk_http_module())),
                )
                self._client_key_hash = digest
            return self._client

    def describe(self, trajectory: Trajectory, timeout_s: float) -> Description:
        try:
            return self._describe(trajectory, timeout_s)
        except BackendError as exc:
            # An upstream error body may echo the key in full (a proxy or gateway that
            # quotes the Authorization header); the detail goes to answers, reports and logs.
            key = self._api_key()
            secret = key.get_secret_value() if key is not None else ""
            if not secret or secret not in exc.detail:
                raise
            raise BackendError(
                exc.kind,
                exc.detail.replace(secret, "[redacted key]"),
                retry_after=exc.retry_after,
                retryable=exc.retryable,
                prompt_tokens=exc.prompt_tokens,
                completion_tokens=exc.completion_tokens,
            ) from None

    def _describe(self, trajectory: Trajectory, timeout_s: float) -> Description:
        key = self._api_key()
        if key is None:
            raise BackendError(FailureKind.NOT_CONFIGURED, "no OPENAI_API_KEY")
        client = self._get_client(key)
        prompt = render_prompt("openai", trajectory, self._prompt_version)
        system, extra = self._system_and_format(prompt.system)
        resp = self._complete(client, system, prompt.user, extra, timeout_s)
        return self._description(resp, prompt.version)

    def _system_and_format(self, system: str) -> tuple[str, dict[str, Any]]:
        """The system message and the request's ``response_format`` for ``structured_output``."""
        extra: dict[str, Any] = {}
        if self.structured_output == "json_schema":
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "trajectory_description", "strict": True, "schema": _openai_schema()},
            }
        else:
            # Without a schema-enforcing response_format the model sees the schema in the prompt.
            system += "\nThe JSON object must match this JSON schema: " + json.dumps(ANSWER_SCHEMA)
            if self.structured_output == "json_object":
                extra["response_format"] = {"type": "json_object"}
        return system, extra

    def _complete(self, client: Any, system: str, user: str, extra: dict[str, Any], timeout_s: float) -> Any:
        """One chat completion; every error of the SDK as a BackendError of its kind."""
        import openai

        try:
            return client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
                **extra,
                temperature=0,
                max_tokens=self._max_tokens,
                timeout=timeout_s,
            )
        except openai.APITimeoutError:
            raise BackendError(FailureKind.TIMEOUT, f"no answer within {timeout_s:.2f} s") from None
        except openai.APIConnectionError as exc:
            raise BackendError(
                FailureKind.UNREACHABLE, f"cannot reach {self.endpoint} ({_cause(exc)})"
            ) from None
        except openai.RateLimitError as exc:
            raise BackendError(
                FailureKind.RATE_LIMITED, "HTTP 429 rate limited", retry_after=_retry_after(exc)
            ) from None
        except openai.AuthenticationError:
            # The error text may echo part of the key: do not pass it on.
            raise BackendError(FailureKind.CLIENT_ERROR, "HTTP 401: the API key was refused") from None
        except openai.APIStatusError as exc:
            kind = FailureKind.SERVER_ERROR if exc.status_code >= 500 else FailureKind.CLIENT_ERROR
            raise BackendError(
                kind, f"HTTP {exc.status_code}: {_short(exc.message)}", retry_after=_retry_after(exc)
            ) from None
        except openai.APIError as exc:  # e.g. a body that is not a chat completion
            raise BackendError(
                FailureKind.SERVER_ERROR, f"malformed response ({exc.__class__.__name__})", retryable=False
            ) from None

    def _description(self, resp: Any, prompt_version: str) -> Description:
        """The answer in a completion; a refusal, a cut-off or an answer off the schema fail as SCHEMA."""
        try:
            choice = resp.choices[0]
            content = choice.message.content
            refusal = getattr(choice.message, "refusal", None)
            finish = choice.finish_reason
            usage = resp.usage
        except (AttributeError, IndexError, TypeError):
            raise BackendError(
                FailureKind.SERVER_ERROR, "malformed response: no choices", retryable=False
            ) from None
        p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
        c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
        if refusal:
            raise BackendError(
                FailureKind.SCHEMA,
                f"the model refused: {_short(refusal)}",
                prompt_tokens=p_tok,
                completion_tokens=c_tok,
            )
        return description_from_answer(
            content, model=self.model, prompt_version=prompt_version, prompt_tokens=p_tok,
            completion_tokens=c_tok, cut_off="max_tokens" if finish == "length" else None,
        )


def _sdk_http_module() -> Any:
    """The httpx-like module the openai SDK is built on (httpx, or httpx2 in recent SDKs)."""
    import openai

    base = openai.DefaultHttpxClient.__mro__[1]  # httpx(2).Client
    return importlib.import_module(base.__module__.split(".")[0])


def _short(text: object, limit: int = 200) -> str:
    s = str(text).replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return cause.__class__.__name__ if cause else exc.__class__.__name__

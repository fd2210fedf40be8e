"""The TGI backend: the ``text-generation`` client against a text-generation-inference container.

Mistral-7B-Instruct gets its ``[INST] ... [/INST]`` instruction format and Phi-2
(no chat template) the plain ``Instruct: ...\\nOutput:`` form; both come from
versioned files in ``prompts/``. The request is the ``text_generation`` client's
(its types and error parsing), sent through httpx under a total deadline. The output
is constrained by TGI's JSON grammar
to the one answer schema, and checked again on arrival. The client has no retries
of its own; the router's retry layer applies.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from services.describer.backends.base import BackendError, Description, FailureKind, Trajectory
from services.describer.backends.llm import ANSWER_SCHEMA, description_from_answer, render_prompt
from services.describer.backends.upstream import deadline_transport

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 1.0  # GET /health must answer within this
HEALTH_CACHE_SECONDS = 10.0  # a probe result is reused this long (ListBackends may be polled)


class TGIBackend:
    """``tgi:<model>`` behind the backend interface."""

    kind = "tgi"

    def __init__(
        self, *, model: str, family: str, endpoint: str, max_new_tokens: int = 600, prompt_version: str = "v1"
    ) -> None:
        self.model = model
        self.name = f"tgi:{model}"
        self.family = family  # prompt family: "mistral" or "phi"
        self.endpoint = endpoint.rstrip("/")
        self._max_new_tokens = max_new_tokens
        self._prompt_version = prompt_version
        self._probe_lock = threading.Lock()
        self._probe_cache: tuple[float, tuple[bool, str]] | None = None
        if self.endpoint:
            # Import the client now, not inside a request's budget.
            import text_generation  # noqa: F401

    def probe(self) -> tuple[bool, str]:
        """(reachable, detail) from TGI's GET /health, cached for HEALTH_CACHE_SECONDS."""
        import requests

        now = time.monotonic()
        with self._probe_lock:
            if self._probe_cache is not None and now - self._probe_cache[0] < HEALTH_CACHE_SECONDS:
                return self._probe_cache[1]
        try:
            r = requests.get(f"{self.endpoint}/health", timeout=HEALTH_TIMEOUT_SECONDS)
            result = (r.status_code == 200, f"GET /health: HTTP {r.status_code}")
        except requests.exceptions.RequestException as exc:
            result = (False, f"GET /health failed ({exc.__class__.__name__})")
        with self._probe_lock:
            self._probe_cache = (now, result)
        return result

    def configured(self) -> tuple[bool, str]:
        if not self.endpoint:
            return False, f"no endpoint for {self.name} (set TRAJLAB_DESCRIBER_TGI_ENDPOINTS)"
        return True, f"{self.family} prompts at {self.endpoint}"

    def describe(self, trajectory: Trajectory, timeout_s: float) -> Description:
        from text_generation.types import Grammar, GrammarType, Parameters, Request

        if not self.endpoint:
            raise BackendError(FailureKind.NOT_CONFIGURED, f"no endpoint for {self.name}")
        prompt = render_prompt(self.family, trajectory, self._prompt_version)
        # The text_generation client's own generate() (requests, read-gap timeouts only)
        # is replaced by the same request through httpx with a total deadline.
        body = Request(
            inputs=prompt.user,
            stream=False,
            parameters=Parameters(
                details=True,
                do_sample=False,
                max_new_tokens=self._max_new_tokens,
                grammar=Grammar(type=GrammarType.Json, value=ANSWER_SCHEMA),
            ),
        )
        resp, p_tok = self._generate(body, timeout_s)
        c_tok = int(resp.details.generated_tokens) if resp.details is not None else 0
        cut = resp.details is not None and str(resp.details.finish_reason.value) == "length"
        return description_from_answer(
            resp.generated_text, model=self.model, prompt_version=prompt.version, prompt_tokens=p_tok,
            completion_tokens=c_tok, cut_off="max_new_tokens" if cut else None,
        )

    def _generate(self, body: Any, timeout_s: float) -> tuple[Any, int]:
        """POST one generate request; TGI's Response and its prompt tokens, every failure a BackendError."""
        import httpx
        from pydantic import ValidationError as PydanticValidationError
        from text_generation import errors as tge
        from text_generation.types import Response

        try:
            with httpx.Client(transport=deadline_transport(httpx), timeout=timeout_s) as http:
                r = http.post(self.endpoint, json=body.model_dump())
            payload = r.json()
            if r.status_code != 200:
                raise tge.parse_error(r.status_code, payload)
            resp = Response(**payload[0])
            p_tok = _prompt_tokens(r.headers, resp)
        except httpx.TimeoutException:
            raise BackendError(FailureKind.TIMEOUT, f"no complete answer within {timeout_s:.2f} s") from None
        except httpx.TransportError as exc:
            raise BackendError(
                FailureKind.UNREACHABLE, f"cannot reach {self.endpoint} ({exc.__class__.__name__})"
            ) from None
        except (tge.OverloadedError, tge.RateLimitExceededError) as exc:
            raise BackendError(FailureKind.RATE_LIMITED, f"overloaded: {_short(exc)}") from None
        except (tge.ValidationError, tge.BadRequestError, tge.NotFoundError) as exc:
            raise BackendError(FailureKind.CLIENT_ERROR, f"request refused: {_short(exc)}") from None
        except (
            tge.GenerationError,
            tge.IncompleteGenerationError,
            tge.ShardNotReadyError,
            tge.ShardTimeoutError,
            tge.UnknownError,
        ) as exc:
            raise BackendError(FailureKind.SERVER_ERROR, f"{exc.__class__.__name__}: {_short(exc)}") from None
        except (
            ValueError,
            AttributeError,
            KeyError,
            IndexError,
            TypeError,
            PydanticValidationError,
        ) as exc:
            # A body that is not TGI's JSON (a proxy's HTML page, a truncated answer).
            raise BackendError(
                FailureKind.SERVER_ERROR, f"malformed response ({exc.__class__.__name__})", retryable=False
            ) from None
        return resp, p_tok


def _prompt_tokens(headers: Any, resp: Any) -> int:
    """Prompt tokens of a TGI answer: its x-prompt-tokens header, else the prefill details
    (present when decoder_input_details is asked for), else 0 (not reported)."""
    try:
        return max(0, int(headers.get("x-prompt-tokens", "")))
    except ValueError:
        pass
    prefill = getattr(resp.details, "prefill", None) if resp.details is not None else None
    return len(prefill) if prefill else 0


def _short(text: object, limit: int = 200) -> str:
    s = str(text).replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."

"""What the language-model backends share: the answer schema, prompts, answer checking.

One fixed JSON schema for every model (OpenAI structured output and TGI grammars
both take it). Prompts are versioned template files under ``prompts/<family>/``;
the version travels with every answer (``prompt_version``, e.g. "mistral/v1") so a
report can say which prompt produced which equation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.describer.backends.base import BackendError, Description, FailureKind, Trajectory
from trajlab.equations import MAX_CHARS, UnsafeEquation, parse_equations

PROMPT_DIR = Path(__file__).resolve().parent.parent / "prompts"
DEFAULT_PROMPT_VERSION = "v1"
MAX_DESCRIPTION_CHARS = 2000

ANSWER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "x": {"type": "string", "description": "x(t), t in seconds", "maxLength": MAX_CHARS},
        "y": {"type": "string", "description": "y(t), t in seconds", "maxLength": MAX_CHARS},
        "z": {"type": "string", "description": "z(t), t in seconds", "maxLength": MAX_CHARS},
        "motion": {"type": "string", "enum": ["linear", "circular", "helical", "parabolic"]},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
    },
    "required": ["x", "y", "z", "motion", "description"],
    "additionalProperties": False,
}


class LLMAnswer(BaseModel):
    """The schema above as a validator (the model's output is checked, never trusted)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x: str = Field(max_length=MAX_CHARS)
    y: str = Field(max_length=MAX_CHARS)
    z: str = Field(max_length=MAX_CHARS)
    motion: Literal["linear", "circular", "helical", "parabolic"]
    description: str = Field(max_length=MAX_DESCRIPTION_CHARS)


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: ``system`` is empty for the single-string (TGI) families."""

    version: str  # "<family>/<version>"
    system: str
    user: str


@lru_cache(maxsize=16)
def load_template(family: str, version: str = DEFAULT_PROMPT_VERSION) -> Template:
    """Read prompts/<family>/<version>.txt (cached: files do not change while serving)."""
    path = PROMPT_DIR / family / f"{version}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path}")
    return Template(path.read_text(encoding="utf-8"))


def _table(times: np.ndarray, points: np.ndarray) -> str:
    if points.shape[0] == 0:
        return "(none)"
    return "\n".join(
        f"t={t:.4f}: ({p[0]:.4f}, {p[1]:.4f}, {p[2]:.4f})" for t, p in zip(times, points, strict=True)
    )


def render_prompt(family: str, trajectory: Trajectory, version: str = DEFAULT_PROMPT_VERSION) -> Prompt:
    """Fill the family's template with the trajectory. "### system"/"### user" split chat templates."""
    text = (
        load_template(family, version)
        .safe_substitute(
            observed_table=_table(trajectory.observed_times, trajectory.observed),
            forecast_table=_table(trajectory.forecast_times, trajectory.forecast),
            predicted_class=trajectory.predicted_class or "unknown",
        )
        .rstrip("\n")
    )
    system = ""
    if text.startswith("### system"):
        head, _, user = text.partition("\n### user\n")
        system = head.removeprefix("### system").strip()
        text = user
    return Prompt(version=f"{family}/{version}", system=system, user=text)


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def check_answer(text: str | None) -> LLMAnswer:
    """Parse and check a model's JSON answer, equations included.

    Raises BackendError(SCHEMA) for output that is not JSON or does not match the
    schema, and BackendError(UNSAFE_EQUATION) for an equation the safe parser refuses.
    """
    if not text or not text.strip():
        raise BackendError(FailureKind.SCHEMA, "the model returned no content")
    m = _FENCE.match(text)
    body = m.group(1) if m else text
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BackendError(
            FailureKind.SCHEMA, f"the model's output is not JSON ({exc.__class__.__name__})"
        ) from None
    try:
        answer = LLMAnswer.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "<root>" for e in exc.errors()[:5])
        raise BackendError(
            FailureKind.SCHEMA, f"the model's JSON does not match the schema ({fields})"
        ) from None
    try:
        parse_equations((answer.x, answer.y, answer.z))
    except UnsafeEquation as exc:
        raise BackendError(FailureKind.UNSAFE_EQUATION, f"refused equation {exc}") from None
    return answer


def description_from_answer(
    text: str | None, *, model: str, prompt_version: str, prompt_tokens: int, completion_tokens: int,
    cut_off: str | None = None,
) -> Description:
    """A language model's answer as a Description, its token usage kept on success and failure.

    ``cut_off`` names the limit (``max_tokens``, ``max_new_tokens``) when the server says the
    answer stopped there: that is a SCHEMA failure whatever the text.
    """
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if cut_off is not None:
        raise BackendError(FailureKind.SCHEMA, f"the answer was cut off at {cut_off}", **usage)
    try:
        answer = check_answer(text)
    except BackendError as exc:
        exc.prompt_tokens, exc.completion_tokens = prompt_tokens, completion_tokens
        raise
    return Description(
        equations=(answer.x, answer.y, answer.z),
        description=answer.description,
        described_class=answer.motion,
        model=model,
        prompt_version=prompt_version,
        **usage,
    )


def answer_schema_json() -> str:
    return json.dumps(ANSWER_SCHEMA, separators=(",", ":"))

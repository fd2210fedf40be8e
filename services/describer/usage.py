"""What one Describe spent at a language model: tokens, call time and, when priced, money.

Prices are the operator's (``DescriberSettings.prices``), per 1,000 tokens and keyed by the
canonical backend name ("openai:gpt-4"). None is built in: list prices change, and a local
model (vLLM, TGI) costs the GPU time it holds, which ``seconds`` shows as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """Price of one backend's tokens, per 1,000 tokens, in the table's currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_per_1k: float = Field(ge=0.0, allow_inf_nan=False)
    completion_per_1k: float = Field(ge=0.0, allow_inf_nan=False)


def check_price_keys(prices: dict[str, Price]) -> dict[str, Price]:
    """Refuse keys that are not a language-model backend ("openai:<model>", "tgi:<model>")."""
    for key in prices:
        kind, sep, model = key.partition(":")
        if kind not in ("openai", "tgi") or not sep or not model.strip():
            raise ValueError(
                f"key {key!r} must name a language-model backend as 'openai:<model>' or 'tgi:<model>' "
                "(e.g. 'openai:gpt-4'); the analytic backend costs nothing"
            )
    return prices


@dataclass
class Usage:
    """Accumulated over the attempts of one Describe at one backend."""

    backend: str
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        self.attempts += 1
        self.prompt_tokens += max(0, int(prompt_tokens))
        self.completion_tokens += max(0, int(completion_tokens))
        self.seconds += max(0.0, seconds)

    def cost(self, prices: dict[str, Price]) -> float | None:
        """Money by the price table; None when the backend has no price."""
        price = prices.get(self.backend)
        if price is None:
            return None
        return (
            self.prompt_tokens * price.prompt_per_1k + self.completion_tokens * price.completion_per_1k
        ) / 1000.0

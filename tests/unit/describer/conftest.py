"""Fixtures: settings and routers wired to local fake servers, with a fake clock and sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.describer.backends.base import Trajectory
from services.describer.router import BackendRegistry, Router
from services.describer.settings import DescriberSettings
from tests.unit.describer.kit import make_trajectory
from trajlab.config import load_settings

BRANCHES = {"b1": "openai:gpt-4", "b2": "openai:gpt-4", "b3": "tgi:mistral", "b4": "tgi:phi-2"}
TEST_KEY = "sk-test-SECRET-0123456789"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_ambient_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key must never reach a test (or a test server).
    for var in ("OPENAI_API_KEY", "TRAJLAB_DESCRIBER_OPENAI_API_KEY", "TRAJLAB_CONFIG"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


RouterFactory = Callable[..., Router]


@pytest.fixture
def make_router(clock: FakeClock, sleeps: list[float]) -> RouterFactory:
    """make_router(**settings) -> Router with fast retries, a fake breaker clock and recorded sleeps."""

    def factory(**overrides: Any) -> Router:
        base: dict[str, Any] = {
            "retry_backoff_seconds": 0.01,
            "breaker_failures": 3,
            "breaker_reset_seconds": 30.0,
        }
        base.update(overrides)
        settings = load_settings(DescriberSettings, **base)
        return Router(BackendRegistry(settings, BRANCHES, clock=clock), sleep=sleeps.append)

    return factory


@pytest.fixture
def trajectory() -> Trajectory:
    tr = make_trajectory("linear", 0)
    return Trajectory(tr.observed, tr.observed_times, predicted_class="linear")

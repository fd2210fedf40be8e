"""What a Describe spent at a language model: tokens from the APIs' own usage fields, every
attempt counted, call time, money by the operator's price table, and the metrics."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.describer.router import BackendRegistry, Router
from services.describer.servicer import result_to_proto
from services.describer.settings import DescriberSettings
from tests.unit.describer.conftest import TEST_KEY, RouterFactory
from tests.unit.describer.kit import (
    OPENAI_429,
    Reply,
    answer_json,
    openai_ok,
    scripted,
    tgi_ok,
)
from trajlab.config import load_settings
from trajlab.errors import ConfigError

GPT4_PRICE = {"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_openai_usage_is_counted_over_every_attempt_and_priced(
    make_router: RouterFactory, trajectory
) -> None:
    before_p = _metric("trajlab_describer_tokens_total", backend="openai:gpt-4", kind="prompt")
    before_c = _metric("trajlab_describer_tokens_total", backend="openai:gpt-4", kind="completion")
    before_cost = _metric("trajlab_describer_cost_total", backend="openai:gpt-4")
    # A schema failure (still billed), then a good answer.
    replies = [openai_ok("not json", prompt_tokens=300, completion_tokens=20), openai_ok(answer_json())]
    with scripted(OPENAI_429, *replies) as srv:
        router = make_router(
            openai_api_key=TEST_KEY, openai_base_url=f"{srv.url}/v1", prices=GPT4_PRICE, retries=2
        )
        res = router.describe(trajectory, backend="openai")
    # 429 (no usage) -> retry -> unusable answer (not retried: a schema failure) -> analytic.
    assert res.fallback_used and res.backend_used == "analytic"
    assert res.usage is not None
    assert (res.usage.attempts, res.usage.prompt_tokens, res.usage.completion_tokens) == (2, 300, 20)
    assert res.usage.seconds > 0
    assert res.cost == pytest.approx((300 * 0.03 + 20 * 0.06) / 1000)
    pb = result_to_proto(res)
    assert pb.usage.backend == "openai:gpt-4" and pb.usage.attempts == 2
    assert (pb.usage.prompt_tokens, pb.usage.completion_tokens) == (300, 20)
    assert pb.usage.priced and pb.usage.cost == pytest.approx(res.cost)
    assert pb.prompt_tokens == 0  # the answer given (analytic's) used none
    assert _metric("trajlab_describer_tokens_total", backend="openai:gpt-4", kind="prompt") - before_p == 300
    assert (
        _metric("trajlab_describer_tokens_total", backend="openai:gpt-4", kind="completion") - before_c == 20
    )
    assert _metric("trajlab_describer_cost_total", backend="openai:gpt-4") - before_cost == pytest.approx(
        res.cost
    )


def test_a_good_answer_carries_its_usage(make_router: RouterFactory, trajectory) -> None:
    with scripted(openai_ok(answer_json(), prompt_tokens=321, completion_tokens=87)) as srv:
        router = make_router(openai_api_key=TEST_KEY, openai_base_url=f"{srv.url}/v1")
        res = router.describe(trajectory, backend="openai")
    assert not res.fallback_used
    assert res.usage is not None and (res.usage.prompt_tokens, res.usage.completion_tokens) == (321, 87)
    assert res.cost is None  # no price configured: nothing is invented
    pb = result_to_proto(res)
    assert not pb.usage.priced and pb.usage.cost == 0.0
    assert (pb.prompt_tokens, pb.completion_tokens) == (321, 87)


def test_tgi_prompt_tokens_from_its_header_or_prefill(make_router: RouterFactory, trajectory) -> None:
    header = Reply(200, tgi_ok(answer_json(), tokens=55).body, {"x-prompt-tokens": "412"})
    prefill_body = tgi_ok(answer_json(), tokens=40).body
    prefill_body[0]["details"]["prefill"] = [{"id": i, "text": "a", "logprob": None} for i in range(7)]
    with scripted(header, Reply(200, prefill_body)) as srv:
        router = make_router(tgi_endpoints={"mistral": srv.url})
        first = router.describe(trajectory, backend="tgi:mistral")
        second = router.describe(trajectory, backend="tgi:mistral")
    assert not first.fallback_used and not second.fallback_used
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.completion_tokens) == (412, 55)
    assert second.usage is not None and (second.usage.prompt_tokens, second.usage.completion_tokens) == (
        7,
        40,
    )
    assert first.cost is None and first.usage.seconds > 0  # local model: GPU time, no price


def test_analytic_and_not_configured_spend_nothing(make_router: RouterFactory, trajectory) -> None:
    router = make_router()  # no key
    assert router.describe(trajectory, backend="analytic").usage is None
    res = router.describe(trajectory, backend="openai")
    assert res.fallback_used and res.usage is None
    assert not result_to_proto(res).HasField("usage")


@pytest.mark.parametrize(
    ("prices", "named"),
    [
        (
            {"openai:gpt-4": {"prompt_per_1k": -1, "completion_per_1k": 0.06}},
            r"prices\.openai:gpt-4\.prompt_per_1k",
        ),
        ({"openai:gpt-4": {"prompt_per_1k": 0.03}}, r"prices\.openai:gpt-4\.completion_per_1k"),
        ({"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06, "per_call": 1}}, r"per_call"),
        ({"gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}, r"prices.*'gpt-4'.*openai:<model>"),
        ({"analytic": {"prompt_per_1k": 0, "completion_per_1k": 0}}, r"prices.*'analytic'"),
    ],
)
def test_a_bad_price_table_is_refused_naming_the_field(prices: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(DescriberSettings, prices=prices)


def test_prices_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TRAJLAB_DESCRIBER_PRICES", '{"openai:gpt-4": {"prompt_per_1k": 0.03, "completion_per_1k": 0.06}}'
    )
    s = load_settings(DescriberSettings)
    assert s.prices["openai:gpt-4"].completion_per_1k == 0.06
    monkeypatch.setenv("TRAJLAB_DESCRIBER_PRICES", '{"openai:gpt-4": {"prompt_per_1k": "cheap"}}')
    with pytest.raises(ConfigError, match=r"prices\.openai:gpt-4\.prompt_per_1k"):
        load_settings(DescriberSettings)


def test_branch_backends_override_the_branches_file(trajectory) -> None:
    s = load_settings(DescriberSettings, branch_backends={"b3": "openai:mistral"})
    defaults = s.branch_defaults({"b1": "analytic", "b3": "tgi:mistral"})
    assert defaults == {"b1": "analytic", "b3": "openai:mistral"}
    router = Router(BackendRegistry(s, defaults))
    assert router.registry.resolve(router.registry.default_for("b3")) == "openai:mistral"
    with pytest.raises(ValueError, match=r"branch_backends: unknown branch\(es\) 'b9'"):
        load_settings(DescriberSettings, branch_backends={"b9": "analytic"}).branch_defaults(
            {"b1": "analytic"}
        )


def test_a_branches_file_adds_to_the_seed_branches_so_mixed_reports_are_described(tmp_path) -> None:
    """A report comparing a custom branch with seed ones asks the describer for both."""
    f = tmp_path / "branches.yaml"
    f.write_text(
        "branches:\n"
        "  - {name: u, encoder: r3d, enhancement: none, describer_backend: analytic}\n"
        "  - {name: b3, encoder: i3d, enhancement: none, describer_backend: analytic}\n"
    )
    s = load_settings(DescriberSettings, branches_file=f)
    found = s.file_backends()
    assert found["u"] == "analytic" and found["b3"] == "analytic"  # the file's, for its own and a seed name
    assert found["b1"] == "openai:gpt-4" and found["b4"] == "tgi:phi-2"  # the seed branches stay known
    router = Router(BackendRegistry(s, s.branch_defaults(found)))
    assert router.registry.default_for("u") == "analytic"
    assert router.registry.default_for("b2") == "openai:gpt-4"

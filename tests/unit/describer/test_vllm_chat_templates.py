"""The chat templates compose's vLLM servers load (deploy/vllm/): the describer's openai backend
sends a system and a user message; Mistral-7B-Instruct's own template refuses a system role and
Phi-2 has none. Rendered as transformers renders chat templates (sandboxed Jinja)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.describer.backends.llm import render_prompt

TEMPLATES = Path(__file__).resolve().parents[3] / "deploy" / "vllm"


def _render(name: str, messages: list[dict[str, str]]) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    template = env.from_string((TEMPLATES / name).read_text(encoding="utf-8"))
    return template.render(messages=messages, bos_token="<s>", eos_token="</s>", add_generation_prompt=True)


@pytest.fixture
def messages(trajectory) -> list[dict[str, str]]:
    prompt = render_prompt("openai", trajectory)
    assert prompt.system and prompt.user
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}]


def test_mistral_gets_one_inst_turn_with_the_system_message_first(messages) -> None:
    text = _render("mistral.jinja", messages)
    assert text == f"<s>[INST] {messages[0]['content']}\n\n{messages[1]['content']} [/INST]"


def test_phi2_gets_its_instruct_output_format(messages) -> None:
    text = _render("phi-2.jinja", messages)
    assert text == f"Instruct: {messages[0]['content']}\n{messages[1]['content']}\nOutput:"


def test_a_conversation_without_a_system_message_still_renders() -> None:
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "{}"},
        {"role": "user", "content": "again"},
    ]
    assert _render("mistral.jinja", msgs) == "<s>[INST] hi [/INST]{}</s>[INST] again [/INST]"
    assert _render("phi-2.jinja", msgs) == "Instruct: hi\nOutput: {}\nInstruct: again\nOutput:"

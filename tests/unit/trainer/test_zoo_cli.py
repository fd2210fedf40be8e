"""``trajlab zoo``: the table, ``--json`` and ``--profile``, as a user runs them."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.unit.trainer.zoo_kit import REGISTRY, standard_names
from trajlab_cli import app


def test_zoo_json_lists_every_registered_encoder_at_the_profile_size() -> None:
    res = CliRunner().invoke(app, ["zoo", "--json", "--no-parity", "--profile", "seed", "--threads", "1"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    names = [r["name"] for r in rows]
    assert names == REGISTRY.names()
    assert len(names) >= 7 and set(standard_names()) <= set(names)
    for r in rows:
        assert r["input_size"] == "3x16x64x64"
        assert r["params"] > 0 and r["flops"] > 0 and r["origin"]
        assert isinstance(r["perception"], bool) and r["perception_reason"]
        assert r["onnx_parity"] is None  # --no-parity


def test_zoo_table_shows_parity_and_perception() -> None:
    res = CliRunner().invoke(app, ["zoo", "-e", "mc3", "-e", "vivit", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "2 encoders at profile quick" in res.output and "3x16x32x32" in res.output
    lines = {ln.split("│")[1].strip(): ln for ln in res.output.splitlines() if ln.count("│") > 3}
    assert "vendored torchvision" in lines["mc3"] and "transformers" in lines["vivit"]
    assert "yes (max abs diff" in lines["mc3"] and "yes (max abs diff" in lines["vivit"]
    assert "yes (tap layer1" in lines["mc3"] and "no (no tap keeps every frame" in lines["vivit"]


@pytest.mark.parametrize(("args", "word"), [(["--profile", "nope"], "nope"), (["-e", "nope"], "nope")])
def test_zoo_names_what_it_does_not_know(args: list[str], word: str) -> None:
    res = CliRunner().invoke(app, ["zoo", "--no-parity", *args])
    assert res.exit_code == 2  # bad input: one line on stderr naming what it does not know
    assert word in res.stderr and "Traceback" not in res.output

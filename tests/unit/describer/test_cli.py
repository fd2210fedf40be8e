"""``trajlab describe`` and ``trajlab backends`` in process (--local)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.describer.kit import N_OBSERVED, make_trajectory
from trajlab_cli import app

runner = CliRunner()


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    tr = make_trajectory("parabolic", 3)
    path = tmp_path / "pts.npy"
    np.save(path, np.c_[tr.times, tr.positions])  # (N, 4): t, x, y, z
    return path


def test_describe_npy_with_observed_split_scores_the_extrapolation(npy: Path) -> None:
    res = runner.invoke(
        app, ["describe", "--points", str(npy), "--observed", str(N_OBSERVED), "--local", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["described_class"] == "parabolic" and out["backend_used"] == "analytic"
    assert out["score"]["accurate"] and out["score"]["normalized_rmse"] < 1e-6


def test_describe_json_object_via_branch_reports_the_fallback(tmp_path: Path) -> None:
    tr = make_trajectory("circular", 2)
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"observed": tr.observed.tolist(), "predicted_class": "circular"}))
    res = runner.invoke(app, ["describe", "-p", str(path), "--branch", "b4", "--local"])
    assert res.exit_code == 0, res.output
    assert "Circular motion" in res.output
    assert "fallback to analytic: not_configured" in res.output
    assert "x(t) = " in res.output


def test_bad_input_exits_with_a_message(tmp_path: Path, npy: Path) -> None:
    res = runner.invoke(app, ["describe", "--points", str(npy), "--backend", "nope", "--local"])
    assert res.exit_code == 2 and "unknown backend 'nope'" in res.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 2)))
    res = runner.invoke(app, ["describe", "--points", str(bad), "--local"])
    assert res.exit_code == 2 and "(N, 3) or (N, 4)" in res.output
    two = tmp_path / "two.json"
    two.write_text("[[0, 0, 5], [1, 0, 5]]")
    res = runner.invoke(app, ["describe", "--points", str(two), "--local"])
    assert res.exit_code == 2 and "at least 3 points" in res.output


def test_backends_lists_every_backend_and_branch_default() -> None:
    res = runner.invoke(app, ["backends", "--local", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {b["name"] for b in out["backends"]} >= {"analytic", "openai:gpt-4", "tgi:mistral", "tgi:phi-2"}
    assert out["branch_defaults"]["b3"] == "tgi:mistral"


def test_describe_shows_what_the_language_model_spent(npy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.describer.kit import answer_json, openai_ok, scripted

    with scripted(openai_ok(answer_json(), prompt_tokens=400, completion_tokens=100)) as srv:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local-0123456789")
        monkeypatch.setenv("TRAJLAB_DESCRIBER_OPENAI_BASE_URLS", json.dumps({"phi-2": f"{srv.url}/v1"}))
        monkeypatch.setenv("TRAJLAB_DESCRIBER_BRANCH_BACKENDS", '{"b4": "openai:phi-2"}')
        monkeypatch.setenv(
            "TRAJLAB_DESCRIBER_PRICES",
            '{"openai:phi-2": {"prompt_per_1k": 0.001, "completion_per_1k": 0.002}}',
        )
        res = runner.invoke(app, ["describe", "-p", str(npy), "--branch", "b4", "--local"])
        as_json = runner.invoke(app, ["describe", "-p", str(npy), "--branch", "b4", "--local", "--json"])
    assert res.exit_code == 0, res.output
    assert "backend: openai:phi-2" in res.output
    assert "language model: openai:phi-2, 1 call(s), 400 prompt + 100 completion tokens" in res.output
    assert "cost 0.0006" in res.output
    usage = json.loads(as_json.output)["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["attempts"]) == (400, 100, 1)
    assert usage["cost"] == pytest.approx(0.0006)


def test_an_unknown_branch_in_branch_backends_is_named(npy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_DESCRIBER_BRANCH_BACKENDS", '{"b9": "analytic"}')
    res = runner.invoke(app, ["describe", "-p", str(npy), "--local"])
    assert res.exit_code != 0 and "branch_backends: unknown branch(es) 'b9'" in res.output

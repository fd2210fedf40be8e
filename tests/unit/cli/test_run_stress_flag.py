"""``trajlab run`` hands the reporter it starts the setting that turns the robustness section on (by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajlab.errors import ConfigError
from trajlab_cli import app


def _planned_stress_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *flags: str) -> str:
    """The stress sets `trajlab run` plans for its reporter; the run stops at its plan."""
    import trajlab_cli.runner as runner

    seen: dict[str, str] = {}
    real = runner.make_plan

    def capture(*args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real(*args, **kwargs)
        seen["stress_sets"] = plan.stress_sets
        raise ConfigError("stop after planning")

    monkeypatch.setattr(runner, "make_plan", capture)
    res = CliRunner().invoke(app, ["run", *flags, "--branches", "b1", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "stop after planning" in res.output, res.output
    return seen["stress_sets"]


def test_run_turns_on_the_reporters_stress_sets_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.reporter.settings import ReporterSettings
    from trajlab.config import load_settings

    monkeypatch.delenv("TRAJLAB_REPORTER_STRESS_SETS", raising=False)
    assert load_settings(ReporterSettings).stress_sets == ""  # the reporter alone: off unless asked for
    assert _planned_stress_sets(tmp_path, monkeypatch) == "all"


def test_no_stress_turns_them_off_even_when_the_environment_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "all")
    assert _planned_stress_sets(tmp_path, monkeypatch, "--no-stress") == ""


def test_a_chosen_set_list_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "noise")
    assert _planned_stress_sets(tmp_path, monkeypatch, "--stress") == "noise"


def test_an_unknown_stress_set_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "noise,fog")
    res = CliRunner().invoke(app, ["run", "--branches", "b1", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "TRAJLAB_REPORTER_STRESS_SETS: unknown stress set 'fog'" in res.output, res.output
    assert not (tmp_path / "runs").exists()

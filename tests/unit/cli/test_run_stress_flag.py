"""``trajlab run`` hands the reporter it starts the setting that turns the robustness section on (by default)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajlab_cli import app


def _run(tmp_path: Path, *flags: str) -> None:
    # An unknown branch stops the run before anything starts; the flag has been read by then.
    res = CliRunner().invoke(app, ["run", *flags, "--branches", "b9", "--root", str(tmp_path)])
    assert res.exit_code == 2 and "unknown branch" in res.output


def test_run_turns_on_the_reporters_stress_sets_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.reporter.settings import ReporterSettings
    from trajlab.config import load_settings

    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "")  # recorded, so the test leaves it as it was
    monkeypatch.delenv("TRAJLAB_REPORTER_STRESS_SETS")
    assert load_settings(ReporterSettings).stress_sets == ""  # the reporter alone: off unless asked for
    _run(tmp_path)
    # The reporter child inherits this environment (trajlab_cli.supervisor).
    assert os.environ["TRAJLAB_REPORTER_STRESS_SETS"] == "all"
    assert load_settings(ReporterSettings).stress_sets == "all"


def test_no_stress_turns_them_off_even_when_the_environment_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "all")
    _run(tmp_path, "--no-stress")
    assert os.environ["TRAJLAB_REPORTER_STRESS_SETS"] == ""


def test_a_chosen_set_list_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAJLAB_REPORTER_STRESS_SETS", "noise")
    _run(tmp_path, "--stress")
    assert os.environ["TRAJLAB_REPORTER_STRESS_SETS"] == "noise"

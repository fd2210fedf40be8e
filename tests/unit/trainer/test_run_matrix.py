"""The run matrix: a completion index picks (branch, seed); a Job's pod trains it and exits."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.trainer.run_matrix import (
    EXIT_FAILED_RUN,
    load_run_matrix,
    resolve_run,
    run_dir_of,
    wait_for_matrix,
)
from services.trainer.seeds import run_of
from services.trainer.settings import TrainerSettings
from services.trainer.training import run_fingerprint
from tests.reliability.procs import ServiceProcess
from tests.unit.trainer.kit import run_config, tiny_profile, write_profile_yaml
from trajlab.config import load_settings
from trajlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _matrix(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "matrix.yaml"
    p.write_text(text)
    return p


def test_index_picks_branch_major_cells(tmp_path: Path) -> None:
    m = load_run_matrix(_matrix(tmp_path, "branches: [b1, b2, b3]\nseeds: [0, 7]\n"))
    cells = [(r.index, r.branch, r.seed) for r in m.runs()]
    assert cells == [(0, "b1", 0), (1, "b1", 7), (2, "b2", 0), (3, "b2", 7), (4, "b3", 0), (5, "b3", 7)]
    assert m.pick(3).branch == "b2" and m.pick(3).seed == 7
    with pytest.raises(ConfigError, match=r"run_index: 6 is outside .* 3 branches x 2 seeds .*completions must equal 6"):
        m.pick(6)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("branches: [b1, b1]\nseeds: [0]\n", "branches: Value error, listed more than once: b1"),
        ("branches: [b1]\nseeds: []\n", "seeds: List should have at least 1 item"),
        ("branches: [b1]\nseeds: [-1]\n", "seeds must be >= 0"),
        ("branches: [b1]\nseeds: [0]\nsede: [1]\n", "sede: Extra inputs are not permitted"),
    ],
)
def test_bad_matrix_names_file_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = _matrix(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_run_matrix(path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_job_completion_index_selects_run_and_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _matrix(tmp_path, "branches: [b1, b2]\nseeds: [0, 1, 2]\n")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "4")
    s = resolve_run(load_settings(TrainerSettings, run_matrix_file=path, run_dir=tmp_path / "runs"))
    assert (s.branch, s.seed, s.run_dir) == ("b2", 1, tmp_path / "runs" / "b2" / "seed-1")
    # The same cell named by hand (the reporter's sidecar trainers) lands in the same directory.
    by_hand = resolve_run(load_settings(TrainerSettings, branch="b2", seed=1, run_dir=tmp_path / "runs"))
    assert by_hand.run_dir == s.run_dir
    # A store URL stays a URL (no "s3:/" from pathlib).
    assert run_dir_of("s3://bucket/trajlab/runs/", "b2", 1) == "s3://bucket/trajlab/runs/b2/seed-1"


def test_without_matrix_or_seed_settings_unchanged(tmp_path: Path) -> None:
    s = load_settings(TrainerSettings, branch="b3", run_dir=tmp_path / "runs" / "b3")
    assert resolve_run(s) is s


def test_matrix_without_index_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.delenv("TRAJLAB_TRAINER_RUN_INDEX", raising=False)
    path = _matrix(tmp_path, "branches: [b1]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"run_index: .*JOB_COMPLETION_INDEX"):
        resolve_run(load_settings(TrainerSettings, run_matrix_file=path))


def _env(tmp_path: Path, matrix: Path, profile: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAJLAB_")}
    env.update(
        PYTHONPATH=str(ROOT),
        TRAJLAB_TRAINER_RUN_MATRIX_FILE=str(matrix),
        TRAJLAB_TRAINER_PROFILE=str(profile),
        TRAJLAB_TRAINER_DATA_DIR=str(tmp_path / "data"),
        TRAJLAB_TRAINER_RUN_DIR=str(tmp_path / "runs"),
        TRAJLAB_TRAINER_MODEL_REPO=str(tmp_path / "models"),
        TRAJLAB_TRAINER_TEXT_CACHE_DIR=str(tmp_path / "text"),
        TRAJLAB_TRAINER_METRICS_PORT="-1",
        TRAJLAB_TRAINER_PORT="0",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def test_indexed_pod_trains_its_cell_exits_and_wait_sees_it(tmp_path: Path) -> None:
    """What one Indexed Job pod does: train (b1, seed 5) from the index, exit 0, done in the store."""
    matrix = _matrix(tmp_path, "branches: [b1]\nseeds: [4, 5]\n")
    profile = write_profile_yaml(tmp_path / "tiny.yaml", tiny_profile(epochs=1))
    env = _env(tmp_path, matrix, profile, JOB_COMPLETION_INDEX="1",
               TRAJLAB_TRAINER_AUTO_START="true", TRAJLAB_TRAINER_EXIT_WHEN_DONE="true")
    proc = subprocess.run([sys.executable, "-m", "services.trainer"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = tmp_path / "runs" / "b1" / "seed-5" / "results.json"
    assert results.is_file(), "the run's results belong in <run_dir>/<branch>/seed-<seed>"
    assert not (tmp_path / "runs" / "b1" / "seed-4").exists(), "index 1 must not train seed 4"
    # ... trained with the matrix's seed (the run's identity says so), not the profile's.
    def identity(seed: int) -> str:
        cfg = run_config(tmp_path, tmp_path / "data", "b1", epochs=1)
        branch, prof = run_of(cfg.branch, cfg.profile, ablation="", seed=seed)
        return run_fingerprint(dataclasses.replace(cfg, branch=branch, profile=prof))

    assert json.loads(results.read_text())["fingerprint"] == identity(5) != identity(4)
    # The pod restarted after it was done (a rescheduled index) exits at once, without retraining.
    again = subprocess.run([sys.executable, "-m", "services.trainer"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    # The reporter's init container: seed 4 is still missing -> not done within the timeout.
    settings = load_settings(TrainerSettings, run_matrix_file=matrix, profile=str(profile),
                             data_dir=tmp_path / "data", run_dir=tmp_path / "runs",
                             text_cache_dir=tmp_path / "text")
    assert wait_for_matrix(settings, poll_seconds=0.1, timeout_seconds=0.0) == 1
    one_seed = _matrix(tmp_path, "branches: [b1]\nseeds: [5]\n")
    assert wait_for_matrix(settings.model_copy(update={"run_matrix_file": one_seed}),
                           poll_seconds=0.1, timeout_seconds=0.0) == 0

    # The reporter Job's pod: a sidecar trainer serves the finished run (branch and seed named,
    # no training), and `services.reporter.once` builds the report from it and exits 0.
    sidecar_env = _env(tmp_path, one_seed, profile, TRAJLAB_TRAINER_BRANCH="b1", TRAJLAB_TRAINER_SEED="5")
    del sidecar_env["TRAJLAB_TRAINER_RUN_MATRIX_FILE"]
    sidecar = ServiceProcess("services.trainer", sidecar_env)
    try:
        report = subprocess.run(
            [sys.executable, "-m", "services.reporter.once"], cwd=tmp_path, capture_output=True, text=True,
            timeout=300,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TRAJLAB_")},
                 "PYTHONPATH": str(ROOT), "TRAJLAB_REPORTER_TRAINERS": f"b1={sidecar.target}",
                 "TRAJLAB_REPORTER_ENCODER_TARGET": "", "TRAJLAB_REPORTER_DESCRIBER_TARGET": "",
                 "TRAJLAB_REPORTER_DATA_DIR": str(tmp_path / "data"),
                 "TRAJLAB_REPORTER_REPORTS_DIR": str(tmp_path / "reports"),
                 "TRAJLAB_REPORTER_METRICS_PORT": "-1", "MPLCONFIGDIR": str(tmp_path / "mpl")},
        )
    finally:
        sidecar.terminate()
    assert report.returncode == 0, report.stderr[-3000:]
    assert "b1" in next((tmp_path / "reports").glob("*/PARALLEL_RESULTS_COMPARISON.md")).read_text()
    assert ": done" in sidecar.output and "resuming" not in sidecar.output, sidecar.output[-2000:]


def test_wait_reports_a_failed_run(tmp_path: Path) -> None:
    matrix = _matrix(tmp_path, "branches: [b2]\nseeds: [0]\n")
    profile = write_profile_yaml(tmp_path / "tiny.yaml", tiny_profile(epochs=1))
    run_dir = tmp_path / "runs" / "b2" / "seed-0"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text('{"state": "failed", "error": "loss is NaN"}')
    settings = load_settings(TrainerSettings, run_matrix_file=matrix, profile=str(profile),
                             run_dir=tmp_path / "runs", text_cache_dir=tmp_path / "text")
    assert wait_for_matrix(settings, poll_seconds=0.1, timeout_seconds=5.0) == EXIT_FAILED_RUN

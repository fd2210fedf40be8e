"""Seeds as an axis: run names, the run plan, bad input refused before anything starts, seeded trainers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trajlab.errors import ConfigError
from trajlab.profiles import load_branches, load_profile
from trajlab.runs import default_run, run_name, split_run_name, training_seeds
from trajlab_cli.runner import make_plan, prometheus_config


def test_run_names_round_trip_and_the_default_run_is_the_lowest_seed() -> None:
    assert run_name("b1", 2) == "b1@s2" and split_run_name("b1@s2") == ("b1", 2)
    assert split_run_name("b1") == ("b1", None) and split_run_name("b1@sx") == ("b1@sx", None)
    assert default_run(["b1@s3", "b2@s0", "b1@s1"], "b1") == "b1@s1"
    assert default_run(["b2@s0"], "b1") is None
    assert training_seeds(5, 3) == [5, 6, 7]


def _plan(tmp_path: Path, **kw):  # type: ignore[no-untyped-def]
    return make_plan("quick", root=tmp_path, use_prometheus=False, threads_per_trainer=None, **kw)


def test_plan_trains_each_branch_once_per_seed_apart(tmp_path: Path) -> None:
    plan = _plan(tmp_path, branches=["b1", "b3"], seeds=2)
    base = load_profile("quick").training.seed
    assert plan.seeds == [base, base + 1]
    assert plan.runs == [f"b1@s{base}", f"b1@s{base + 1}", f"b3@s{base}", f"b3@s{base + 1}"]
    assert {f"trainer-{r}" for r in plan.runs} <= set(plan.ports)
    assert len({plan.ports[f"trainer-{r}"] for r in plan.runs}) == 4
    cfg = prometheus_config(plan)
    assert f"branch: 'b1@s{base + 1}', run: 'b1@s{base + 1}', base_branch: 'b1', seed: '{base + 1}'" in cfg


def test_profile_default_seeds(tmp_path: Path) -> None:
    assert len(_plan(tmp_path, branches=None).seeds) == load_profile("quick").training.seeds >= 1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"branches": ["b1"], "seeds": 0}, "--seeds: expected a number of training seeds >= 1, got 0"),
        ({"branches": ["b1", "b2", "b1"], "seeds": 1}, r"--branches: branch\(es\) listed twice: \['b1'\]"),
        ({"branches": ["b9"], "seeds": 1}, "--branches: unknown"),
    ],
)
def test_bad_input_is_refused_naming_the_option(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _plan(tmp_path, **kw)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # nothing started


def test_cli_refuses_seeds_zero_before_anything_starts(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3]), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "trajlab_cli", "run", "--root", str(tmp_path), "--no-prometheus"]
    res = subprocess.run([*cmd, "--seeds", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0 and "--seeds" in res.stderr and ">= 1" in res.stderr, res.stderr
    env["TRAJLAB_SEEDS"] = "0"  # the same from the environment (compose, CI)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode != 0 and "--seeds" in res.stderr, res.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_seeded_trainer_is_named_after_its_run_and_trains_with_its_seed() -> None:
    from services.trainer.seeds import seeded

    branch, profile = load_branches()["b2"], load_profile("quick")
    run, prof = seeded(branch, profile, 7)
    assert run.name == "b2@s7" and run.encoder == branch.encoder and prof.training.seed == 7
    assert prof.dataset == profile.dataset  # same clips for every seed
    assert seeded(branch, profile, None) == (branch, profile)


def test_ablate_perception_adds_a_run_per_branch_and_seed_and_bad_ablations_are_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path, branches=["b1", "b2"], seeds=1, ablations=["perception"])
    s = plan.seeds[0]
    assert plan.runs == [f"b1@s{s}", f"b1-noperc@s{s}", f"b2@s{s}", f"b2-noperc@s{s}"]
    with pytest.raises(ConfigError, match=r"--ablate: unknown ablation\(s\) \['encoder'\]; known: \['perception'\]"):
        _plan(tmp_path, branches=["b1"], seeds=1, ablations=["encoder"])


def test_ablated_trainer_has_the_perception_off_under_its_own_name() -> None:
    from services.trainer.seeds import ablated, seeded
    from services.trainer.training import RunConfig, model_args_for

    def perception(branch, profile) -> bool:  # what the trainer builds the model with
        cfg = RunConfig(branch=branch, profile=profile, data_dir=Path("d"), run_dir=Path("r"), model_repo=Path("m"))
        return model_args_for(cfg).track

    branch, profile = load_branches()["b1"], load_profile("quick")
    assert perception(branch, profile)
    run, prof = seeded(*ablated(branch, profile, "perception"), 3)
    assert run.name == "b1-noperc@s3" and not perception(run, prof) and prof.training.seed == 3
    assert ablated(branch, profile, "") == (branch, profile)

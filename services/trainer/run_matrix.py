"""The run matrix: which (branch, seed) a trainer process trains, picked by an index.

A cluster trains every branch with every seed as one Kubernetes Indexed Job; each pod
gets its completion index (``JOB_COMPLETION_INDEX``, or ``TRAJLAB_TRAINER_RUN_INDEX``)
and reads the matrix from a mounted ConfigMap (``TRAJLAB_TRAINER_RUN_MATRIX_FILE``)::

    branches: [b1, b2, b3, b4]   # names from the branches file
    seeds: [0, 1, 2]             # training seeds (weight init and data order)

Runs are numbered branch-major: index = branch position x len(seeds) + seed position,
so the Job's ``completions`` is ``len(branches) x len(seeds)``. Each run has its own run
directory, ``<run_dir>/<branch>/seed-<seed>``, in the store every pod shares, so a pod
rescheduled after a failure resumes that run's newest checkpoint.

``python -m services.trainer.run_matrix wait`` blocks until every run of the matrix has
complete results in the store (the reporter Job's init container), and with
``--build-dataset`` then builds the profile's dataset for the reporter (deterministic:
the same bytes the trainers built).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from trajlab.errors import ConfigError
from trajlab.run_matrix import Run, RunMatrix, load_run_matrix  # noqa: F401 - the matrix, shared with the reporter
from trajlab.runs import ablated_branch

log = logging.getLogger(__name__)

EXIT_FAILED_RUN = 3  # a run that failed for good (e.g. a NaN loss): retrying cannot help
EXIT_INTERRUPTED = 143  # stopped before the run was done (SIGTERM): the Job retries and resumes


def join_store(base: Any, *parts: str) -> Any:
    """``base/part/...`` for a local path or a store URL, keeping its type (Path, a store-URL
    type with ``joinpath``, or a plain ``s3://bucket/prefix`` string)."""
    if hasattr(base, "joinpath"):
        return base.joinpath(*parts)
    return "/".join([str(base).rstrip("/"), *parts])


def run_dir_of(base: Any, branch: str, seed: int) -> Any:
    """The run directory of one (branch, seed) under the matrix's run-dir base."""
    return join_store(base, branch, f"seed-{seed}")


def resolve_run(settings: Any) -> Any:
    """The settings of the run this process trains: matrix cell and per-seed run directory.

    Without a matrix file or a seed, the settings come back unchanged (compose, ``make run``).
    With a matrix file, ``run_index`` picks branch and seed; with a seed (from the matrix
    or ``TRAJLAB_TRAINER_SEED``), the run directory becomes ``<run_dir>/<branch>/seed-<seed>``.
    """
    branch, seed = settings.branch, settings.seed
    if settings.run_matrix_file is not None:
        if settings.run_index is None:
            raise ConfigError(
                "run_index: a run matrix file is set but no index: set JOB_COMPLETION_INDEX "
                "(an Indexed Job does) or TRAJLAB_TRAINER_RUN_INDEX"
            )
        run = load_run_matrix(settings.run_matrix_file).pick(settings.run_index)
        branch, seed = run.branch, run.seed
    if seed is None:
        return settings
    base = settings.run_dir if settings.run_dir is not None else Path("./runs")
    trained = ablated_branch(branch, settings.ablate)
    run_dir = run_dir_of(base, trained, seed)
    return settings.model_copy(update={"branch": branch, "seed": seed, "run_dir": run_dir})


def run_state(settings: Any) -> tuple[str, str]:
    """("done" | "failed" | "pending", detail) of the run the settings name, read from its run dir."""
    from services.trainer.controller import make_run_config_factory
    from services.trainer.seeds import run_of
    from services.trainer.training import completed_results, run_fingerprint
    from trajlab.profiles import load_branches, load_profile

    branches = load_branches(settings.branches_file)
    if settings.branch not in branches:
        raise ConfigError(
            f"branches: unknown branch {settings.branch!r} in the run matrix; known: {sorted(branches)}"
        )
    branch, profile = run_of(branches[settings.branch], load_profile(settings.profile),
                             ablation=settings.ablate, seed=settings.seed)
    cfg = make_run_config_factory(settings, branch)(profile)
    if completed_results(cfg.run_dir, run_fingerprint(cfg)) is not None:
        return "done", ""
    try:
        status = json.loads((Path(cfg.run_dir) / "status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "pending", "no status yet"
    if status.get("state") == "failed":
        return "failed", str(status.get("error", ""))
    epoch = f"{status.get('epoch', '?')}/{status.get('total_epochs', '?')}"
    return "pending", f"{status.get('state', '?')} epoch {epoch}"


def wait_for_matrix(settings: Any, *, poll_seconds: float, timeout_seconds: float) -> int:
    """Block until every run is done (0), one failed (EXIT_FAILED_RUN) or the timeout passed (1)."""
    if settings.run_matrix_file is None:
        raise ConfigError("run_matrix_file: `wait` needs TRAJLAB_TRAINER_RUN_MATRIX_FILE")
    matrix = load_run_matrix(settings.run_matrix_file)
    deadline = time.monotonic() + timeout_seconds
    while True:
        pending = []
        for run in matrix.runs():
            one = resolve_run(settings.model_copy(update={"run_matrix_file": None, "branch": run.branch,
                                                          "seed": run.seed}))
            state, detail = run_state(one)
            if state == "failed":
                log.error("run %d (%s, seed %d) failed: %s", run.index, run.branch, run.seed, detail)
                return EXIT_FAILED_RUN
            if state == "pending":
                pending.append(f"{run.branch}/seed-{run.seed} ({detail})")
        if not pending:
            log.info("every run of the matrix is done (%d runs)", len(matrix.runs()))
            return 0
        if time.monotonic() >= deadline:
            log.error("timed out waiting for %d run(s): %s", len(pending), "; ".join(pending))
            return 1
        log.info("waiting for %d run(s): %s", len(pending), "; ".join(pending[:8]))
        time.sleep(poll_seconds)


def _build_dataset(settings: Any) -> None:
    from trajlab.data import build_dataset
    from trajlab.profiles import load_profile

    profile = load_profile(settings.profile)
    path = build_dataset(profile.dataset, settings.resolved_data_dir(profile.name), progress=False)
    log.info("dataset of profile %s ready in %s", profile.name, path)


def main(argv: list[str] | None = None) -> int:
    from services.trainer.settings import TrainerSettings
    from trajlab.config import load_settings
    from trajlab.logging_setup import setup_logging

    p = argparse.ArgumentParser(prog="python -m services.trainer.run_matrix", description="run matrix tools")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait", help="wait until every run of the matrix is done (TRAJLAB_TRAINER_* settings)")
    w.add_argument("--poll-seconds", type=float, default=30.0)
    w.add_argument("--timeout-seconds", type=float, default=7 * 24 * 3600.0)
    w.add_argument("--build-dataset", action="store_true", help="then build the profile's dataset (reporter)")
    sub.add_parser("show", help="print the runs of the matrix, one per line")
    args = p.parse_args(argv)
    setup_logging("INFO")
    try:
        settings = load_settings(TrainerSettings)
        if args.command == "show":
            if settings.run_matrix_file is None:
                raise ConfigError("run_matrix_file: `show` needs TRAJLAB_TRAINER_RUN_MATRIX_FILE")
            for run in load_run_matrix(settings.run_matrix_file).runs():
                print(f"{run.index}\t{run.branch}\t{run.seed}")  # noqa: T201 (a CLI's output)
            return 0
        code = wait_for_matrix(settings, poll_seconds=args.poll_seconds, timeout_seconds=args.timeout_seconds)
        if code == 0 and args.build_dataset:
            _build_dataset(settings)
        return code
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())

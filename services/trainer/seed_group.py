"""A trainer that trains several seeds of its branch at once: compose's ``TRAJLAB_SEEDS``.

With ``TRAJLAB_TRAINER_SEEDS=N`` (N >= 1), ``python -m services.trainer`` starts N trainer
processes, one per training seed of the profile (``training.seed``, ``+1``, ... as
``trajlab run --seeds N``): seed k's run ``<branch>@s<seed>`` listens on the group's port + k
and trains in ``<run_dir>/<branch>/seed-<seed>`` (run_matrix.resolve_run). The reporter finds
the runs the same way (:func:`trajlab.runs.seed_group_targets`). The group's metrics port
serves every run's metrics, labelled ``run`` and ``seed`` (services/trainer/seed_metrics.py);
seed k's own /metrics is on loopback, metrics port + 1 + k.

The group lives and dies as one: SIGTERM and SIGINT are passed to every child; when a child
fails on its own (an error, the OOM killer), the others are stopped and the group exits with
that status, so Docker's restart policy restarts the container and every run resumes from its
last checkpoint. A child that exits 0 (its run done, with ``exit_when_done``) is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from services.trainer.seed_metrics import CHILD_HOST, child_metrics_ports, serve_group_metrics
from trajlab.errors import ConfigError
from trajlab.runs import ablated_branch, run_name, training_seeds

log = logging.getLogger("services.trainer.seed_group")

POLL_SECONDS = 0.5  # how often the group looks at its children


def child_envs(settings: Any, base_seed: int) -> dict[str, dict[str, str]]:
    """{run name: the environment overrides of its child trainer} for ``settings.seeds`` seeds."""
    if settings.run_matrix_file is not None or settings.seed is not None:
        raise ConfigError(
            "seeds: a seed group picks its own seeds; unset TRAJLAB_TRAINER_SEED and "
            "TRAJLAB_TRAINER_RUN_MATRIX_FILE (or set TRAJLAB_TRAINER_SEEDS=0)"
        )
    if settings.port <= 0:
        raise ConfigError(
            f"seeds: a seed group needs a fixed port (seed k on port + k), got port {settings.port}"
        )
    out: dict[str, dict[str, str]] = {}
    # With ``ablate`` set the children train ``<branch>-noperc@s<seed>`` (services/trainer/seeds.py).
    trained = ablated_branch(settings.branch, settings.ablate)
    seeds = training_seeds(base_seed, settings.seeds)
    metrics_ports = child_metrics_ports(settings.metrics_port, len(seeds))
    for k, (seed, metrics) in enumerate(zip(seeds, metrics_ports, strict=True)):
        out[run_name(trained, seed)] = {
            "TRAJLAB_TRAINER_SEEDS": "0",  # each child trains its one run itself
            "TRAJLAB_TRAINER_SEED": str(seed),
            "TRAJLAB_TRAINER_PORT": str(settings.port + k),
            "TRAJLAB_TRAINER_METRICS_HOST": CHILD_HOST,  # scraped by the group, not from outside
            "TRAJLAB_TRAINER_METRICS_PORT": str(metrics),
        }
    return out


def metrics_children(envs: dict[str, dict[str, str]]) -> dict[str, int]:
    """{the run each child trains, as its metrics name it: its metrics port}."""
    return {name: int(env["TRAJLAB_TRAINER_METRICS_PORT"]) for name, env in envs.items()}


def serve_metrics(settings: Any, envs: dict[str, dict[str, str]]) -> int | None:
    """Serve every child's metrics on the group's metrics port; None when metrics are off."""
    if settings.metrics_port < 0:
        return None
    return serve_group_metrics(settings.metrics_host, settings.metrics_port, metrics_children(envs))


def _stop_with_parent() -> None:
    """In a child before exec: SIGTERM it when the group dies, even by SIGKILL (Linux prctl)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_group(envs: dict[str, dict[str, str]]) -> int:
    """Run one child trainer per entry until they have all exited; the group's exit status."""
    children = {
        run: subprocess.Popen(
            [sys.executable, "-m", "services.trainer"],
            env={**os.environ, **env},
            start_new_session=True,  # a terminal's Ctrl-C reaches them once, through the group
            preexec_fn=_stop_with_parent,
        )
        for run, env in envs.items()
    }
    log.info("seed group: %s", ", ".join(f"{r} (pid {p.pid})" for r, p in children.items()))
    status = 0

    def stop_all(signum: int = signal.SIGTERM) -> None:
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def on_signal(signum: int, _frame: Any) -> None:
        stop_all(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while True:
        codes = {run: proc.poll() for run, proc in children.items()}  # every child, every round
        if all(rc is not None for rc in codes.values()):
            break
        for run, rc in codes.items():
            if rc is not None and rc != 0 and status == 0:
                status = rc if rc > 0 else 128 - rc  # killed by a signal: 128 + its number
                log.error("seed group: %s exited with status %s: stopping the other runs", run, status)
                stop_all()
        time.sleep(POLL_SECONDS)
    for run, proc in children.items():
        if proc.returncode != 0 and status == 0:
            status = proc.returncode if proc.returncode > 0 else 128 - proc.returncode
            log.error("seed group: %s exited with status %s", run, status)
    return status


def main() -> int | None:
    """Run the seed group ``TRAJLAB_TRAINER_SEEDS`` asks for; None when it asks for none.

    Bad settings also give None: the single-run path reports them (one clear line, exit 2).
    """
    from services.trainer.settings import TrainerSettings
    from trajlab.config import load_settings
    from trajlab.logging_setup import setup_logging
    from trajlab.profiles import load_profile
    from trajlab.service_main import EXIT_BAD_CONFIG

    try:
        settings = load_settings(TrainerSettings)
    except ConfigError:
        return None
    if settings.seeds == 0:
        return None
    setup_logging(settings.log_level, settings.json_logs)
    try:
        envs = child_envs(settings, load_profile(settings.profile).training.seed)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_BAD_CONFIG
    try:
        serve_metrics(settings, envs)  # before the children: a scrape meanwhile says who is not up yet
    except OSError as exc:
        log.error("metrics_port: cannot serve the seed group's metrics on %s:%s: %s",
                  settings.metrics_host, settings.metrics_port, exc)
        return EXIT_BAD_CONFIG
    return run_group(envs)

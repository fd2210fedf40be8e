"""``TRAJLAB_TRAINER_SEEDS=2 python -m services.trainer``: one process, two seed runs (compose's TRAJLAB_SEEDS).

Both runs train to DONE under their run names, each on the group's port + k, in its own run
directory, publishing its own model; a child killed from outside takes the group down with
a restartable status (Docker then restarts the container); started again on the same
folders, both runs come back DONE from their checkpoints; SIGTERM stops the group cleanly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trajlab.clients.trainer import TrainerClient
from trajlab.profiles import load_profile
from trajlab.runs import run_name, training_seeds

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def _free_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
        return p
    raise RuntimeError("no two consecutive free ports")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"


def _start(tmp_path: Path, tiny_data: Path, profile_yaml: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRAJLAB_TRAINER_SEEDS": "2",
        "TRAJLAB_TRAINER_HOST": "127.0.0.1",
        "TRAJLAB_TRAINER_PORT": str(port),
        "TRAJLAB_TRAINER_METRICS_PORT": "-1",
        "TRAJLAB_TRAINER_BRANCH": "b4",
        "TRAJLAB_TRAINER_PROFILE": str(profile_yaml),
        "TRAJLAB_TRAINER_DATA_DIR": str(tiny_data),
        "TRAJLAB_TRAINER_RUN_DIR": str(tmp_path / "run"),
        "TRAJLAB_TRAINER_MODEL_REPO": str(tmp_path / "models"),
        "TRAJLAB_TRAINER_AUTO_START": "true",
        "TRAJLAB_TRAINER_THREADS": "1",
        "TRAJLAB_TRAINER_GRACE_SECONDS": "2",
    }
    return subprocess.Popen([sys.executable, "-m", "services.trainer"], env=env, cwd=tmp_path)


def _final_states(port: int, runs: list[str]) -> dict[str, tuple[str, str]]:
    """{run: (the name its trainer reports, its final state)} for the trainer on port + k."""
    out = {}
    for k, run in enumerate(runs):
        with TrainerClient(f"127.0.0.1:{port + k}", timeout=30) as client:
            client.wait_until_serving(timeout=120)
            final = list(client.watch_status(timeout=600))[-1]
            out[run] = (final.branch, final.state)
    return out


def test_a_seed_group_trains_each_seed_dies_as_one_and_resumes(
    tmp_path: Path, tiny_data: Path, profile_yaml: Path
) -> None:
    seeds = training_seeds(load_profile(str(profile_yaml)).training.seed, 2)
    runs = [run_name("b4", s) for s in seeds]
    port = _free_pair()
    group = _start(tmp_path, tiny_data, profile_yaml, port)
    try:
        assert _final_states(port, runs) == {r: (r, "done") for r in runs}
        for s in seeds:
            assert (tmp_path / "run" / "b4" / f"seed-{s}").is_dir()
        assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(runs)
        children = _children(group.pid)
        assert len(children) == 2
        # One run killed from outside (the OOM killer's way): the group stops the other and exits
        # with the killed run's status, which Docker's restart policy answers with a restart.
        os.kill(children[1], signal.SIGKILL)
        assert group.wait(timeout=60) == 128 + signal.SIGKILL
        deadline = time.monotonic() + 30
        while not _gone(children[0]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(children[0]), "the other run outlived its group"
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()
    # Restarted on the same folders: both runs are DONE from their checkpoints; SIGTERM stops all.
    group = _start(tmp_path, tiny_data, profile_yaml, port)
    try:
        assert _final_states(port, runs) == {r: (r, "done") for r in runs}
        children = _children(group.pid)
        group.send_signal(signal.SIGTERM)
        assert group.wait(timeout=60) == 0
        assert all(_gone(c) for c in children)
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()

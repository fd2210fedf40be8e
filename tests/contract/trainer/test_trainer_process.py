"""``python -m services.trainer`` as a process: env config, health, auto-start, metrics, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from trajlab.clients.trainer import TrainerClient

ROOT = Path(__file__).resolve().parents[3]


def _wait_for(pattern: str, lines: list[str], proc: subprocess.Popen, timeout: float = 120) -> re.Match:
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    raise AssertionError(f"{pattern!r} not logged; output:\n{''.join(lines)}")


@pytest.mark.slow
def test_process_auto_starts_trains_exposes_metrics_and_stops_on_sigterm(
    tmp_path: Path, tiny_data: Path, profile_yaml: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TRAJLAB_TRAINER_HOST": "127.0.0.1",
        "TRAJLAB_TRAINER_PORT": "0",
        "TRAJLAB_TRAINER_METRICS_PORT": "0",
        "TRAJLAB_TRAINER_BRANCH": "b4",
        "TRAJLAB_TRAINER_PROFILE": str(profile_yaml),
        "TRAJLAB_TRAINER_DATA_DIR": str(tiny_data),
        "TRAJLAB_TRAINER_RUN_DIR": str(tmp_path / "run"),
        "TRAJLAB_TRAINER_MODEL_REPO": str(tmp_path / "models"),
        "TRAJLAB_TRAINER_AUTO_START": "true",
        "TRAJLAB_TRAINER_THREADS": "1",
        "TRAJLAB_TRAINER_GRACE_SECONDS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.trainer"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        metrics_port = int(_wait_for(r"metrics on http://[\d.]+:(\d+)/metrics", lines, proc).group(1))
        port = int(_wait_for(r"trainer for branch b4 .* on port (\d+)", lines, proc).group(1))
        with TrainerClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(timeout=60)
            final = list(client.watch_status(timeout=300))[-1]
            assert final.state == "done", final
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert 'trajlab_trainer_state{branch="b4",trajlab_trainer_state="done"} 1.0' in body
        assert 'trajlab_trainer_epoch{branch="b4"} 2.0' in body
        assert re.search(r'trajlab_trainer_clips_per_second\{branch="b4"\} [1-9]', body)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

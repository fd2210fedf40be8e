"""Checkpoints: atomic, rotated, corrupt ones skipped, and loadable after kill -9 during a save."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from services.trainer import checkpoint as ckpt


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "weights": torch.full((8,), float(epoch)), "rng": ckpt.rng_state()}


def test_save_load_round_trip_keeps_only_the_newest(tmp_path: Path) -> None:
    for e in range(1, 6):
        ckpt.save_checkpoint(tmp_path, e, _state(e), keep=2)
    assert [e for e, _ in ckpt.list_checkpoints(tmp_path)] == [4, 5]
    state = ckpt.load_latest(tmp_path)
    assert state is not None and state["epoch"] == 5
    assert torch.equal(state["weights"], torch.full((8,), 5.0))


def test_rng_states_round_trip() -> None:
    saved = ckpt.rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(saved)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_corrupt_newest_checkpoint_is_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt.save_checkpoint(tmp_path, 1, _state(1), keep=3)
    newest = ckpt.save_checkpoint(tmp_path, 2, _state(2), keep=3)
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as a broken disk would leave it
    with caplog.at_level(logging.WARNING):
        state = ckpt.load_latest(tmp_path)
    assert state is not None and state["epoch"] == 1
    assert "skipping corrupt checkpoint" in caplog.text and newest.name in caplog.text


def test_validator_refuses_checkpoints_of_another_run(tmp_path: Path) -> None:
    ckpt.save_checkpoint(tmp_path, 1, {**_state(1), "fingerprint": "other"}, keep=3)
    assert (
        ckpt.load_latest(tmp_path, validate=lambda s: "different run" if s["fingerprint"] != "me" else None)
        is None
    )


_SAVER = textwrap.dedent(
    """
    import sys, torch
    from services.trainer import checkpoint as ckpt
    d = sys.argv[1]
    big = torch.randn(6_000_000)  # ~24 MB per save, so a kill often lands mid-write
    for epoch in range(1, 100000):
        ckpt.save_checkpoint(d, epoch, {"epoch": epoch, "weights": big + epoch}, keep=2)
        print(epoch, flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_save_leaves_a_loadable_checkpoint(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    rng = random.Random(0)
    for attempt in range(3):
        d = tmp_path / f"run{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVER, str(d)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(rng.uniform(0.05, 0.6))  # then die at an arbitrary point, often inside a save
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        files = ckpt.list_checkpoints(d)
        assert files, "the complete checkpoint vanished"
        for epoch, path in files:  # every file under a final name is complete
            s = torch.load(path, weights_only=True)
            assert s["epoch"] == epoch and s["weights"].numel() == 6_000_000
        state = ckpt.load_latest(d)
        assert state is not None and state["epoch"] == files[-1][0]
        ckpt.remove_stale_temp_files(d)
        assert not [p for p in d.iterdir() if ".tmp-" in p.name]  # trajlab.atomic's temporary names

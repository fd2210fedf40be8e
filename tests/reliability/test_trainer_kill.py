"""A trainer killed with SIGKILL at chosen-at-random moments, restarted each time, finishes as if never killed.

``python -m services.trainer`` (tiny profile, 4 epochs, a checkpoint every epoch,
auto-start) is killed three times, each at a seeded random delay after a log line
that marks a phase: during an epoch, during a checkpoint save, during ONNX export.
It is restarted after each kill. Then: it reports DONE having resumed from a
checkpoint, every version in the model repository is complete and valid (no
partial version ever became visible: the encoder would serve whatever is there),
and the results and per-epoch history equal those of an uninterrupted run.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.procs import ServiceProcess
from tests.unit.trainer import kit as tkit
from trajlab.clients.trainer import TrainerClient
from trajlab.data import build_dataset
from trajlab.modelrepo import list_branches, list_versions, read_metadata, sha256_file

EPOCHS = 4
SEED = 20261122  # the kill delays are random but reproducible
METRICS = ("accuracy", "mean_class_accuracy", "forecast_mae", "forecast_rmse", "forecast_mae_pct", "ade", "fde")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("trainer-kill")
    data = build_dataset(tkit.TINY_DATASET, d / "data")
    profile = tkit.write_profile_yaml(d / "tiny.yaml", tkit.tiny_profile(epochs=EPOCHS, checkpoint_every=1))
    return {"dir": d, "data": data, "profile": profile}


def _env(setup: dict[str, Path], name: str) -> dict[str, str]:
    d = setup["dir"] / name
    return {
        "TRAJLAB_TRAINER_PORT": "0",
        "TRAJLAB_TRAINER_METRICS_PORT": "-1",
        "TRAJLAB_TRAINER_BRANCH": "b4",
        "TRAJLAB_TRAINER_PROFILE": str(setup["profile"]),
        "TRAJLAB_TRAINER_DATA_DIR": str(setup["data"]),
        "TRAJLAB_TRAINER_RUN_DIR": str(d / "run"),
        "TRAJLAB_TRAINER_MODEL_REPO": str(d / "models"),
        "TRAJLAB_TRAINER_TEXT_CACHE_DIR": str(d / "text-cache"),
        "TRAJLAB_TRAINER_AUTO_START": "true",
        "TRAJLAB_TRAINER_THREADS": "1",
    }


def _finish(proc: ServiceProcess) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """Wait for DONE; (results, history, final status)."""
    with TrainerClient(proc.target, timeout=60) as c:
        c.wait_until_serving(timeout=60)
        final = list(c.watch_status(timeout=300))[-1]
        assert final.state == "done", (final, proc.output[-4000:])
        return c.get_results(), c.get_history(), final


def _wait_line(proc: ServiceProcess, pattern: str, start: int, timeout: float = 240.0) -> int:
    """Index of the first output line at or after ``start`` matching ``pattern``."""
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for i in range(start, len(proc.lines)):
            if rx.search(proc.lines[i]):
                return i
        if proc.proc.poll() is not None:
            break
        time.sleep(0.005)
    raise AssertionError(f"{pattern!r} never logged:\n{proc.output[-4000:]}")


def _assert_repository_complete(repo: Path) -> int:
    """Every version directory is complete and matches its checksum; returns how many there are."""
    n = 0
    for branch in list_branches(repo):
        for v in list_versions(repo, branch):
            vdir = repo / branch / str(v)
            meta = read_metadata(vdir, root=repo)
            assert meta.version == v and meta.branch == branch
            assert sha256_file(vdir / "model.onnx") == meta.model_sha256, f"{vdir}: model does not match metadata"
            n += 1
        # Anything else in the branch is a hidden temp dir or the lock, which readers ignore.
        for child in (repo / branch).iterdir():
            assert child.name.isdigit() or child.name.startswith("."), child
    return n


@pytest.mark.slow
def test_sigkill_during_epoch_checkpoint_and_export_then_restart_matches_an_uninterrupted_run(
    setup: dict[str, Path],
) -> None:
    # The uninterrupted reference trains beside the killed run (one torch thread each):
    # results do not depend on timing, and the test takes half the wall time.
    ref_proc = ServiceProcess("services.trainer", _env(setup, "reference"))
    rng = random.Random(SEED)
    env = _env(setup, "killed")
    # (phase, log line that starts it, random delay after it in seconds)
    kills = [
        ("during an epoch", r"epoch 1/\d+:", rng.uniform(0.0, 0.25)),
        ("during a checkpoint save", r"epoch \d+/\d+:", rng.uniform(0.0, 0.02)),
        ("during ONNX export", rf"ckpt-epoch-{EPOCHS:05d}", rng.uniform(0.3, 2.0)),
    ]
    outputs = []
    for phase, pattern, delay in kills:
        proc = ServiceProcess("services.trainer", env)
        _wait_line(proc, pattern, 0)
        time.sleep(delay)
        proc.kill()  # SIGKILL: no handler, no cleanup
        if phase == "during ONNX export":
            # The export (seconds) had not finished: the kill did land in it.
            assert "published model version" not in proc.output, proc.output[-3000:]
        outputs.append(f"--- killed {phase} ({delay:.3f} s after {pattern!r})\n{proc.output}")
        _assert_repository_complete(Path(env["TRAJLAB_TRAINER_MODEL_REPO"]))
    proc = ServiceProcess("services.trainer", env)
    try:
        results, history, final = _finish(proc)
        ref_results, ref_history, _ = _finish(ref_proc)
    finally:
        proc.terminate()
        ref_proc.terminate()
    log = "\n".join(outputs) + proc.output

    assert "resumed from checkpoint" in log, log[-4000:]
    assert _assert_repository_complete(Path(env["TRAJLAB_TRAINER_MODEL_REPO"])) >= 1
    assert final.model_version >= 1
    for m in METRICS:
        assert results[m] == pytest.approx(ref_results[m], rel=1e-6, abs=1e-9), (m, results[m], ref_results[m])
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    for h, r in zip(history, ref_history, strict=True):
        assert h["val_loss"] == pytest.approx(r["val_loss"], rel=1e-6), (h, r)

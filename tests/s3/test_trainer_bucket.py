"""A trainer whose run directory, dataset and model repository are in a bucket (real S3 server).

The trainer is killed with SIGKILL right after a checkpoint's local save, while it is
uploaded, and restarted on "another node" (an empty local cache): it fetches the newest
complete checkpoint from the bucket (an upload without its marker is ignored), resumes,
and ends with the same weights and results as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from services.reporter.sources.stored_runs import StoredRunSource
from tests.reliability.procs import ServiceProcess
from tests.unit.trainer import kit as tkit
from trajlab.clients.trainer import TrainerClient
from trajlab.modelbucket import complete_versions
from trajlab.store import Store, open_store
from trajlab.store.units import complete_units, fetch_unit

pytestmark = pytest.mark.s3

EPOCHS = 3
KEEP = 2
SEED = 20261203
METRICS = ("accuracy", "forecast_mae", "forecast_mae_pct", "ade", "fde")


def _env(s3_env: dict[str, str], bucket: str, run: str, cache: Path, profile: Path) -> dict[str, str]:
    return {
        **s3_env,
        "TRAJLAB_TRAINER_PORT": "0",
        "TRAJLAB_TRAINER_METRICS_PORT": "-1",
        "TRAJLAB_TRAINER_BRANCH": "b4",
        "TRAJLAB_TRAINER_PROFILE": str(profile),
        "TRAJLAB_TRAINER_DATA_DIR": f"s3://{bucket}/data",
        "TRAJLAB_TRAINER_RUN_DIR": f"s3://{bucket}/{run}/run",
        "TRAJLAB_TRAINER_MODEL_REPO": f"s3://{bucket}/{run}/models",
        "TRAJLAB_TRAINER_CACHE_DIR": str(cache),
        "TRAJLAB_TRAINER_TEXT_CACHE_DIR": str(cache / "text"),
        "TRAJLAB_TRAINER_AUTO_START": "true",
        "TRAJLAB_TRAINER_THREADS": "1",
    }


def _finish(proc: ServiceProcess) -> tuple[dict[str, Any], Any]:
    with TrainerClient(proc.target, timeout=60) as c:
        c.wait_until_serving(timeout=60)
        final = list(c.watch_status(timeout=300))[-1]
        assert final.state == "done", (final, proc.output[-4000:])
        return c.get_results(), final


def _wait_line(proc: ServiceProcess, pattern: str, timeout: float = 240.0) -> None:
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(rx.search(line) for line in list(proc.lines)):
            return
        if proc.proc.poll() is not None:
            break
        time.sleep(0.002)
    raise AssertionError(f"{pattern!r} never logged:\n{proc.output[-4000:]}")


def _complete_epochs(store: Store) -> list[int]:
    return sorted(int(u.rsplit("-", 1)[1]) for u in complete_units(store.list("checkpoints/")))


def _final_weights(store: Store, tmp: Path) -> dict[str, torch.Tensor]:
    units = sorted(complete_units(store.list("checkpoints/")))
    fetch_unit(store, units[-1], tmp)
    (path,) = tmp.glob("ckpt-epoch-*.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["epoch"] == EPOCHS
    return dict(state["model"])


@pytest.mark.slow
def test_a_trainer_killed_mid_checkpoint_resumes_elsewhere_from_the_bucket_and_matches_an_uninterrupted_run(
    bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tkit.write_profile_yaml(
        tmp_path / "tiny.yaml", tkit.tiny_profile(epochs=EPOCHS, checkpoint_every=1, keep_checkpoints=KEEP)
    )
    # The reference trains uninterrupted beside the killed run (one torch thread each).
    ref = ServiceProcess(
        "services.trainer", _env(s3_env, bucket, "reference", tmp_path / "ref-node", profile)
    )
    env = _env(s3_env, bucket, "killed", tmp_path / "node-1", profile)
    proc = ServiceProcess("services.trainer", env)
    _wait_line(proc, r"checkpoint saved: .*ckpt-epoch-00002\.pt")  # logged after the local save
    time.sleep(random.Random(SEED).uniform(0.0, 0.05))  # during or right after its upload
    proc.kill()
    assert "published model version" not in proc.output

    run_store = open_store(f"s3://{bucket}/killed/run")
    done = _complete_epochs(run_store)
    assert done and done[-1] in (1, 2), done
    # What an upload killed before its marker leaves, one epoch beyond the newest complete one.
    partial = next(iter(complete_units(run_store.list("checkpoints/")))).rsplit("/", 1)[0]
    run_store.put_bytes(
        f"{partial}/epoch-{done[-1] + 1:05d}/ckpt-epoch-{done[-1] + 1:05d}.pt", b"torn upload"
    )

    # Rescheduled on another node: nothing local, everything from the bucket.
    env["TRAJLAB_TRAINER_CACHE_DIR"] = str(tmp_path / "node-2")
    env["TRAJLAB_TRAINER_TEXT_CACHE_DIR"] = str(tmp_path / "node-2" / "text")
    proc = ServiceProcess("services.trainer", env)
    try:
        results, final = _finish(proc)
        ref_results, _ = _finish(ref)
    finally:
        proc.terminate()
        ref.terminate()
    assert f"resumed from checkpoint of epoch {done[-1]}" in proc.output, proc.output[-4000:]
    assert "fetched the dataset" in proc.output  # the dataset came from the bucket too
    for m in METRICS:
        assert results[m] == pytest.approx(ref_results[m], rel=1e-6, abs=1e-9), (
            m,
            results[m],
            ref_results[m],
        )
    weights = _final_weights(run_store, tmp_path / "final-killed")
    ref_weights = _final_weights(open_store(f"s3://{bucket}/reference/run"), tmp_path / "final-ref")
    assert weights.keys() == ref_weights.keys()
    for k, v in weights.items():
        assert torch.equal(v, ref_weights[k]), k
    # Old checkpoints were rotated out of the bucket; the model was published once, complete.
    assert _complete_epochs(run_store) == list(range(EPOCHS - KEEP + 1, EPOCHS + 1))
    assert complete_versions(open_store(f"s3://{bucket}/killed/models").list("")) == {"b4": [1]}
    assert final.model_version == 1
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in proc.output
    # The run's status and results are readable from the bucket alone (the reporter, the monitor).
    status = json.loads(run_store.get_bytes("status.json"))
    assert status["state"] == "done" and status["epoch"] == EPOCHS
    stored = StoredRunSource("run", open_store(f"s3://{bucket}/killed"), bucket=True).fetch()
    assert stored.missing == [] and stored.results is not None
    assert stored.results.accuracy == pytest.approx(results["accuracy"], rel=1e-6)

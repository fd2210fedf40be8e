"""The trainer image, started with testcontainers: trains, publishes, and survives a crash.

A tiny profile (mounted into the container) keeps it to seconds of training. Branch
b3 is used because it is the heaviest image path: the text-alignment enhancement with
the all-MiniLM-L6-v2 sentence encoder shipped inside the image (no hub download).
The crash test is the promise behind compose's restart policy: a trainer killed
mid-run (SIGKILL) and started again on the same volumes resumes from its checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from tests.docker.containers import TrainerContainer
from trajlab.trainer.v1 import trainer_pb2

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(2400)]

BRANCH = "b3"
TINY = {
    "name": "tiny",
    "description": "container test: a few clips, a few epochs",
    "dataset": {"samples": 32, "val_fraction": 0.25, "seed": 0, "frames": 8, "horizon": 4,
                "height": 32, "width": 32, "fps": 8.0},
    "training": {"epochs": 4, "batch_size": 8, "lr": 0.002, "checkpoint_every": 1,
                 "status_interval_seconds": 1, "threads": 1},
}
S = trainer_pb2


@pytest.fixture
def volumes() -> Iterator[dict[str, Path]]:
    """Host folders for /profiles (read-only), /data, /models and /runs, writable by uid 10001."""
    root = Path(tempfile.mkdtemp(prefix="trajlab-trainer-"))
    root.chmod(0o755)
    dirs = {name: root / name for name in ("profiles", "data", "models", "runs")}
    for name, d in dirs.items():
        d.mkdir()
        d.chmod(0o755 if name == "profiles" else 0o777)
    (dirs["profiles"] / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    (dirs["profiles"] / "tiny.yaml").chmod(0o644)
    yield dirs
    shutil.rmtree(root, ignore_errors=True)


def trainer(image: str, vols: dict[str, Path], **env: str) -> TrainerContainer:
    c = TrainerContainer(
        BRANCH,
        image=image,
        TRAJLAB_TRAINER_PROFILE="/profiles/tiny.yaml",
        TRAJLAB_TRAINER_DATA_DIR="/data/tiny",
        TRAJLAB_TRAINER_RUN_DIR=f"/runs/{BRANCH}",
        TRAJLAB_TRAINER_THREADS="1",
        **env,
    )
    c.with_volume_mapping(str(vols["profiles"]), "/profiles", "ro")
    for name in ("data", "models", "runs"):
        c.with_volume_mapping(str(vols[name]), f"/{name}", "rw")
    return c


def wait_state(c: TrainerContainer, pred, timeout: float = 600.0) -> S.TrainingStatus:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = c.stub().GetStatus(S.GetStatusRequest(), timeout=10).status
        if pred(st):
            return st
        assert st.state != S.TRAINING_STATE_FAILED, st.error
        time.sleep(1)
    raise AssertionError(f"trainer did not reach the expected state in {timeout} s:\n{c.logs_text()}")


def test_trains_publishes_and_answers_every_rpc(image, volumes: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    with trainer(image("trainer"), volumes) as c:
        stub = c.stub()
        st = stub.GetStatus(S.GetStatusRequest(), timeout=10).status
        assert st.state == S.TRAINING_STATE_IDLE and st.branch.name == BRANCH
        # Bad input and wrong moment: the status codes a client acts on.
        with pytest.raises(grpc.RpcError) as err:
            stub.GetResults(S.GetResultsRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            stub.StartTraining(S.StartTrainingRequest(profile="../etc/passwd"), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            next(iter(stub.WatchStatus(S.WatchStatusRequest(min_interval_seconds=-1), timeout=10)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        started = stub.StartTraining(S.StartTrainingRequest(), timeout=30)
        assert started.started
        states = [m.status.state for m in stub.WatchStatus(S.WatchStatusRequest(min_interval_seconds=0.5), timeout=600)]
        assert states[-1] == S.TRAINING_STATE_DONE, c.logs_text()

        history = stub.GetHistory(S.GetHistoryRequest(), timeout=10)
        assert [e.epoch for e in history.epochs] == [1, 2, 3, 4]
        res = stub.GetResults(S.GetResultsRequest(), timeout=10).results
        assert 0.0 <= res.accuracy <= 1.0 and len(res.confusion_matrix) == 16
        assert res.model_version == 1 and "minilm" in res.text_encoder.lower()
    # Published to the model repository the encoder reads: <repo>/<branch>/<version>/.
    assert (volumes["models"] / BRANCH / "1" / "model.onnx").is_file()
    assert (volumes["models"] / BRANCH / "1" / "metadata.json").is_file()


def test_a_killed_trainer_resumes_from_its_checkpoint(image, volumes: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    name = image("trainer")
    with trainer(name, volumes, TRAJLAB_TRAINER_AUTO_START="true") as first:
        wait_state(first, lambda st: st.epoch >= 2)
        # The status counts an epoch when its training ends; its checkpoint lands just after
        # (atomically, by rename). Kill once epoch 2's is on the volume, or a loaded machine
        # can land the kill in between and the run rightly resumes from epoch 1.
        ckpts = volumes["runs"] / BRANCH / "checkpoints"
        deadline = time.monotonic() + 120
        while not list(ckpts.glob("*/ckpt-epoch-00002.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list(ckpts.glob("*/ckpt-epoch-00002.pt")), first.logs_text()
        first.get_wrapped_container().kill()  # SIGKILL: a crash, no graceful stop
    with trainer(name, volumes) as second:  # no auto-start: resuming is the trainer's own doing
        st = wait_state(second, lambda st: st.state == S.TRAINING_STATE_DONE)
        assert st.resumed_from_epoch >= 2
        epochs = [e.epoch for e in second.stub().GetHistory(S.GetHistoryRequest(), timeout=10).epochs]
        assert epochs == [1, 2, 3, 4]

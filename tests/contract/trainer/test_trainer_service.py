"""The trainer service over a real gRPC channel: start, watch to completion, history, results, errors."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from services.trainer.training import Trainer, TrainingFailed
from tests.contract.trainer.conftest import ServerFactory
from tests.unit.trainer import kit
from trajlab.modelrepo import list_versions
from trajlab.trainer.v1 import trainer_pb2, trainer_pb2_grpc


def test_start_watch_history_results(start_trainer: ServerFactory, tmp_path: Path) -> None:
    _server, client = start_trainer()
    assert client.get_status().state == "idle"
    with pytest.raises(grpc.RpcError) as err:
        client.get_results()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no results yet" in err.value.details()

    started, status = client.start_training()
    assert started and status.branch == "b4"
    again, _ = client.start_training()
    assert again is False  # idempotent: one run

    seen = list(client.watch_status(timeout=300))
    assert seen[-1].state == "done", seen[-1]
    states = [s.state for s in seen]
    assert "training" in states or "exporting" in states or "evaluating" in states
    assert seen[-1].epoch == seen[-1].total_epochs == 2 and seen[-1].model_version == 1

    history = client.get_history()
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["clips_per_second"] > 0 for h in history)

    res = client.get_results()
    assert res["branch"]["name"] == "b4" and res["class_names"] == [
        "linear",
        "circular",
        "helical",
        "parabolic",
    ]
    assert sum(res["confusion_matrix"]) == res["samples"] == 8
    assert 0.0 <= res["accuracy"] <= 1.0 and res["forecast_mae"] > 0
    assert [b["name"] for b in res["baselines"]] == [
        "chance",
        "constant_velocity",
        "constant_acceleration",
        "constant_turn_rate",
        "best_of",
    ]
    assert len(res["per_class"]) == 4 and res["model_version"] == 1 and res["zero_shot_accuracy"] == -1
    # The track readout is on by default: its error and the physics given the model's own track.
    track = res["observed_track"]
    assert track["present"] is True and track["observed_mae"] > 0 and track["observed_mae_pct"] > 0
    assert 0.0 <= track["classifier_accuracy"] <= 1.0  # the track classifier alone
    assert [b["name"] for b in track["baselines"]] == [
        "constant_velocity",
        "constant_acceleration",
        "constant_turn_rate",
        "best_of",
    ]
    assert all(b["accuracy"] == -1 and b["forecast_mae_pct"] > 0 for b in track["baselines"])
    assert all(len(b["per_class"]) == 4 for b in track["baselines"])
    assert list_versions(tmp_path / "models", "b4") == [1]


def test_results_without_a_track_readout_leave_observed_track_unset() -> None:
    from trajlab.trainer_results import results_to_proto

    base = {"accuracy": 0.5, "baselines": [{"name": "chance", "accuracy": 0.25}]}
    assert not results_to_proto(base).HasField("observed_track")
    own = {"name": "constant_velocity", "accuracy": -1, "forecast_mae": 0.2, "forecast_mae_pct": 7.5}
    msg = results_to_proto(
        {**base, "track": {"observed_mae": 0.1, "observed_mae_pct": 3.0, "baselines": [own]}}
    )
    t = msg.observed_track
    assert t.present and t.observed_mae_pct == 3.0 and t.baselines[0].forecast_mae_pct == 7.5
    assert not t.HasField("classifier_accuracy")  # results from before the track classifier


def test_restarted_service_reports_done_without_retraining(
    start_trainer: ServerFactory, tmp_path: Path
) -> None:
    server, client = start_trainer()
    client.start_training()
    assert list(client.watch_status(timeout=300))[-1].state == "done"
    first = client.get_results()
    server.stop(grace_seconds=0.5)

    _server2, client2 = start_trainer()
    status = client2.get_status()
    assert status.state == "done" and status.model_version == 1
    assert client2.get_results()["created_at"] == first["created_at"]
    started, _ = client2.start_training()
    assert started is False
    assert list_versions(tmp_path / "models", "b4") == [1]


def test_service_resumes_an_interrupted_run_on_start(
    start_trainer: ServerFactory, tmp_path: Path, tiny_data: Path
) -> None:
    cfg = kit.run_config(tmp_path, tiny_data, "b4", epochs=2)

    def die(epoch: int) -> None:
        raise RuntimeError("simulated crash after epoch 1")

    with pytest.raises(TrainingFailed):
        Trainer(cfg, on_epoch_end=die).run()
    _server, client = start_trainer(run_dir=cfg.run_dir)  # no StartTraining call
    final = list(client.watch_status(timeout=300))[-1]
    assert final.state == "done" and final.resumed_from_epoch == 1


def test_bad_requests_are_refused_with_a_reason(start_trainer: ServerFactory) -> None:
    server, client = start_trainer()
    for profile in ("../../etc/passwd", "no-such-profile"):
        with pytest.raises(grpc.RpcError) as err:
            client.start_training(profile=profile)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "profile" in err.value.details()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = trainer_pb2_grpc.TrainerServiceStub(ch)
        for bad in (-1.0, 1e308, float("nan")):
            with pytest.raises(grpc.RpcError) as err:
                list(stub.WatchStatus(trainer_pb2.WatchStatusRequest(min_interval_seconds=bad), timeout=10))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "min_interval_seconds" in err.value.details()
    assert client.get_status().state == "idle"  # nothing started by the bad calls


def test_a_failed_run_is_reported_and_results_refused(
    start_trainer: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.trainer import step_loop  # the step loop computes the loss

    real = step_loop.combined_loss
    monkeypatch.setattr(
        step_loop, "combined_loss", lambda *a, **k: (lambda t, p: (t * float("nan"), p))(*real(*a, **k))
    )
    _server, client = start_trainer()
    client.start_training()
    final = list(client.watch_status(timeout=300))[-1]
    assert final.state == "failed" and "loss is nan" in final.error
    with pytest.raises(grpc.RpcError) as err:
        client.get_results()
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "loss is nan" in err.value.details()

"""What a run costs: parameters, FLOPs per clip and training CPU time in results.json and metadata.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from services.trainer.cost import flops_per_clip, training_cost
from services.trainer.training import Trainer
from tests.unit.trainer import kit
from trajlab.modelrepo import ModelMetadata, read_metadata
from trajlab.trainer_results import results_to_proto


def test_flops_of_a_known_convolution_and_matmul() -> None:
    # Conv3d 3 -> 4 channels, 1x1x1 kernel, on 2x2x2 voxels: 3 * 4 multiply-adds per voxel, 2 FLOPs each.
    conv = nn.Conv3d(3, 4, kernel_size=1, bias=False)
    assert flops_per_clip(conv, torch.zeros(5, 3, 2, 2, 2)) == 2 * 3 * 4 * 8  # one clip, not the batch
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 2 * 2, 10))
    assert flops_per_clip(model, torch.zeros(1, 3, 2, 2, 2)) == 2 * 24 * 10
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        flops_per_clip(conv, torch.zeros(3, 2, 2, 2))


def test_training_cost_sums_epochs_and_leaves_out_cpu_time_it_did_not_measure() -> None:
    hist = [{"duration_seconds": 2.0, "cpu_seconds": 3.5}, {"duration_seconds": 1.0, "cpu_seconds": 1.5}]
    assert training_cost(hist) == {"training_seconds": 3.0, "training_cpu_seconds": 5.0}
    # A resume from a checkpoint written before CPU time was measured: wall time only.
    old = [{"duration_seconds": 2.0}, {"duration_seconds": 1.0, "cpu_seconds": 1.5}]
    assert training_cost(old) == {"training_seconds": 3.0}
    assert training_cost([]) == {"training_seconds": 0.0}


def test_a_tiny_run_records_params_flops_and_cpu_seconds(tmp_path: Path, tiny_data: Path) -> None:
    cfg = kit.run_config(tmp_path, tiny_data, "b1", publish=True, epochs=2)
    res = Trainer(cfg).run()
    saved = json.loads((cfg.run_dir / "results.json").read_text())
    assert saved["parameters"] > 1000
    assert saved["flops_per_clip"] > saved["parameters"]  # a conv net does many MACs per weight
    assert saved["training_cpu_seconds"] > 0 and saved["training_seconds"] > 0
    assert saved["training_cpu_seconds"] == pytest.approx(sum(h["cpu_seconds"] for h in saved["history"]))
    assert res["flops_per_clip"] == saved["flops_per_clip"]
    # Over the trainer's RPC, with presence: the reporter tells "measured" from "not measured".
    msg = results_to_proto(saved)
    assert msg.HasField("flops_per_clip") and msg.flops_per_clip == saved["flops_per_clip"]
    assert msg.HasField("training_cpu_seconds") and msg.parameters == saved["parameters"]
    older = {k: v for k, v in saved.items() if k not in ("flops_per_clip", "training_cpu_seconds")}
    assert not results_to_proto(older).HasField("flops_per_clip")
    assert not results_to_proto(older).HasField("training_cpu_seconds")
    # The published model says what it costs to run.
    meta = read_metadata(Path(saved["model_dir"]), root=cfg.model_repo)
    assert meta.cost is not None
    assert (meta.cost.parameters, meta.cost.flops_per_clip) == (saved["parameters"], saved["flops_per_clip"])


def test_metadata_written_before_the_cost_field_still_loads(tmp_path: Path) -> None:
    raw = {
        "branch": "b1",
        "version": 1,
        "branch_config": {},
        "profile": "quick",
        "input": {"frames": 8, "height": 24, "width": 24, "mean": [0.5] * 3, "std": [0.25] * 3},
        "class_names": ["a"],
        "outputs": [],
        "forecast_horizon": 4,
        "fps": 8.0,
        "embedding_dim": 16,
        "opset": 18,
        "framework": "pytorch",
        "validation_metrics": {},
        "dataset_manifest_sha256": "0" * 64,
        "model_sha256": "0" * 64,
        "model_size_bytes": 1,
        "created_at": "2026-01-01T00:00:00Z",
    }
    assert ModelMetadata.model_validate(raw).cost is None
    with pytest.raises(ValueError, match="flops_per_clip"):
        ModelMetadata.model_validate({**raw, "cost": {"parameters": 1}})


def test_flops_are_counted_for_a_model_with_the_sphere_fit() -> None:
    # The seed profile's perception fits a sphere per frame with Gauss-Newton steps; counting its
    # FLOPs must not fail (the report said "not measured" for every perception branch), and the
    # sphere fit's own matrix products add to the count.
    from services.trainer.branch import create_branch_model
    from services.trainer.model_args import ModelArgs

    def model(sphere_fit: bool) -> nn.Module:
        torch.manual_seed(0)
        return create_branch_model(ModelArgs(
            encoder="i3d", enhancement="compression", frames=8, height=32, width=32, horizon=4,
            encoder_args={"channels": [4, 8, 8]}, track=True, sphere_fit=sphere_fit, focal_px=27.7,
            object_radius=0.45,
        ))

    clip = torch.zeros(1, 3, 8, 32, 32)
    with_fit, without = flops_per_clip(model(True), clip), flops_per_clip(model(False), clip)
    assert with_fit > without > 0

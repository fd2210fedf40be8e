"""Publishing a trained model: ONNX export through the parity gate, metadata, the model
repository (a Trainer mixin)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from services.trainer.branch import BranchModel, set_conv_memory_format
from trajlab.preprocess import DEFAULT_MEAN, DEFAULT_STD, to_model_input
from trajlab.profiles import CLASS_NAMES

log = logging.getLogger("services.trainer.training")


class Publishing:
    """``Trainer._export_and_publish``."""

    def _export_and_publish(
        self, model: BranchModel, val: Any, results: dict[str, Any], manifest: str
    ) -> dict[str, Any]:
        from services.trainer.export import OPSET, check_parity, export_onnx, output_specs
        from trajlab.modelbucket import publish_model

        cfg = self.cfg
        d = cfg.profile.dataset
        model.eval()
        set_conv_memory_format(model, False)  # export and parity from the plain layout
        clips = to_model_input(val.clips[: cfg.profile.training.parity_clips])
        export_dir = self.run_dir / "export"
        onnx_path = export_onnx(model, export_dir / "model.onnx", torch.from_numpy(clips[:2]))
        worst = check_parity(model, onnx_path, clips)
        metric_keys = (
            "accuracy",
            "mean_class_accuracy",
            "forecast_mae",
            "forecast_rmse",
            "forecast_mae_pct",
            "forecast_rmse_pct",
            "ade",
            "fde",
            "zero_shot_accuracy",
        )
        validation_metrics = {k: float(results[k]) for k in metric_keys}
        validation_metrics["onnx_parity_max_abs_diff"] = worst
        metadata = {
            "branch": cfg.branch.name,
            "branch_config": {
                **cfg.branch.model_dump(mode="json"),
                "model_args": model.args.to_dict(),
                "text_encoder": results.get("text_encoder", ""),
                "training": cfg.profile.training.model_dump(mode="json"),
            },
            "profile": cfg.profile.name,
            "input": {
                "name": "clip",
                "layout": "NCTHW",
                "frames": d.frames,
                "height": d.height,
                "width": d.width,
                "channels": 3,
                "dtype": "float32",
                "mean": list(DEFAULT_MEAN),
                "std": list(DEFAULT_STD),
            },
            "class_names": list(CLASS_NAMES),
            "outputs": output_specs(model),
            "forecast_horizon": d.horizon,
            "fps": d.fps,
            "embedding_dim": model.embedding_dim,
            "opset": OPSET,
            "framework": f"pytorch {torch.__version__} -> onnx (torch.onnx dynamo exporter)",
            "validation_metrics": validation_metrics,
            "dataset_manifest_sha256": manifest,
        }
        if "flops_per_clip" in results:  # services/trainer/cost.py; the metadata field is optional
            metadata["cost"] = {
                "parameters": int(results["parameters"]),
                "flops_per_clip": int(results["flops_per_clip"]),
            }
        version, vdir = publish_model(
            cfg.model_repo, cfg.branch.name, onnx_path, metadata, staging=self.run_dir / "published"
        )
        log.info("branch %s: published model version %d at %s", cfg.branch.name, version, vdir)
        return {
            "model_version": version,
            "model_dir": str(vdir),
            "model_size_bytes": int((vdir / "model.onnx").stat().st_size),
            "onnx_parity_max_abs_diff": worst,
        }

"""A training recipe scored on the held-out test split: one branch, one profile (with overrides).

Trains a branch with the trainer itself (one torch thread, no export), then scores the trained
PyTorch model on the dataset's held-out test split (the split `make run`'s report scores
through the served ONNX model; the parity gate keeps the two within ~1e-5) against the
seed's criteria: accuracy > 80 %, forecast MAE < 20 % of extent. Prints one JSON line with the
validation and test figures and the training CPU-seconds from results.json.

    .venv/bin/python bench/bench_recipe.py --branch b1 [--profile quick] \
        [--set training.fresh_clips_per_epoch=320 --set training.epochs=16] [--work DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.trainer.evaluation import classification_metrics, forecast_metrics  # noqa: E402
from services.trainer.training import RunConfig, Trainer  # noqa: E402
from trajlab.config import validate_model  # noqa: E402
from trajlab.data import load_dataset  # noqa: E402
from trajlab.profiles import CLASS_NAMES, Profile, load_branches, load_profile  # noqa: E402


def with_overrides(profile: Profile, sets: list[str]) -> Profile:
    """``section.key=value`` overrides (values parsed as YAML), validated like a profile file."""
    data = profile.model_dump(mode="json")
    for s in sets:
        key, _, value = s.partition("=")
        section, _, field = key.partition(".")
        if not field or section not in ("dataset", "training", "model"):
            raise SystemExit(f"--set: expected section.key=value, got {s!r}")
        data[section][field] = yaml.safe_load(value)
    return validate_model(Profile, data, "--set")


def run(branch: str, profile: Profile, work: Path, data: Path) -> dict[str, Any]:
    cfg = RunConfig(
        branch=load_branches()[branch],
        profile=profile,
        data_dir=data,
        run_dir=work / "runs" / branch,
        model_repo=work / "models",
        text_cache_dir=work / "text-cache",
        threads=1,
        progress=False,
        publish=False,
    )
    trainer = Trainer(cfg)
    res = trainer.run()
    if trainer.model is None:
        raise SystemExit(f"{cfg.run_dir} holds a completed run: use another --work to retrain")
    test = load_dataset(data, expected_config=profile.dataset).split("test")
    frames = profile.dataset.frames
    p = trainer.predict(trainer.model, test.clips)
    labels = np.asarray(test.labels, np.int64)
    cls = classification_metrics(p["logits"].argmax(1), labels, len(CLASS_NAMES))
    fm = forecast_metrics(p["forecast"], np.asarray(test.positions[:, frames:], np.float64), test.extent)
    last = res["history"][-1]
    return {
        "branch": branch,
        "val_accuracy": round(res["accuracy"] * 100, 2),
        "val_mae_pct": round(res["forecast_mae_pct"], 2),
        "test_accuracy": round(cls["accuracy"] * 100, 2),
        "test_mae_pct": round(fm["forecast_mae_pct"], 2),
        "test_clips": len(labels),
        "train_accuracy_last_epoch": round(last["train_accuracy"] * 100, 2),
        "training_cpu_seconds": round(res["training_cpu_seconds"], 1),
        "training_seconds": round(res["training_seconds"], 1),
        "training_data": res.get("training_data"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--branch", default="b1")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--set", action="append", default=[], help="section.key=value (repeatable)")
    ap.add_argument("--work", type=Path, default=None, help="run/data dir (default: a temporary one)")
    ap.add_argument("--data", type=Path, default=None, help="dataset cache (default: WORK/data)")
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    profile = with_overrides(load_profile(a.profile), a.set)
    t0 = time.monotonic()
    row = run(a.branch, profile, work, a.data or work / "data")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row["process_cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    row["wall_seconds"] = round(time.monotonic() - t0, 1)
    row["overrides"] = a.set
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""Cost of each seed branch on a profile, from a real training run: what the report's cost section shows.

Trains each branch (one torch thread, no export) with the trainer itself and prints, from
its results.json: parameters, forward FLOPs per clip (services/trainer/cost.py), training
wall time and the trainer process's CPU-seconds, and the validation accuracy; ratios are
against the first branch, measured in the same run. On a shared machine the wall time
depends on the load; the CPU-seconds much less.

    .venv/bin/python bench/bench_cost.py [--profile quick] [--branches b1,b2,b3,b4] [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.trainer.training import RunConfig, Trainer  # noqa: E402
from trajlab.profiles import load_branches, load_profile  # noqa: E402


def train(branch: str, profile: str, work: Path) -> dict[str, Any]:
    cfg = RunConfig(
        branch=load_branches()[branch],
        profile=load_profile(profile),
        data_dir=work / "data",
        run_dir=work / "runs" / branch,
        model_repo=work / "models",
        text_cache_dir=work / "text-cache",
        threads=1,
        progress=False,
        publish=False,
    )
    res = Trainer(cfg).run()
    keys = ("parameters", "flops_per_clip", "training_seconds", "training_cpu_seconds", "accuracy")
    return {"branch": branch, **{k: res.get(k) for k in keys}, "epochs": len(res.get("history", []))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--branches", default="b1,b2,b3,b4")
    ap.add_argument("--work", type=Path, default=None, help="run/data dir (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="bench-cost-"))
    rows = []
    for b in a.branches.split(","):
        try:
            rows.append(train(b, a.profile, work))
        except Exception as exc:  # one branch that cannot train here is reported, not fatal
            rows.append({"branch": b, "error": f"{type(exc).__name__}: {exc}"})
        print(json.dumps(rows[-1]), flush=True)
    ok = [r for r in rows if "error" not in r]
    ref = ok[0] if ok else None
    print(f"\nprofile {a.profile}, one torch thread per run, work dir {work}")
    print(f"{'branch':8} {'params':>10} {'MFLOPs/clip':>12} {'wall s':>8} {'CPU-s':>8} {'CPU/wall':>8} "
          f"{'val acc':>8} {'CPU-s ratio':>11}")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['branch']:8} failed: {r['error']}")
            continue
        ratio = r["training_cpu_seconds"] / ref["training_cpu_seconds"] if ref else float("nan")
        print(
            f"{r['branch']:8} {r['parameters']:>10,} {r['flops_per_clip'] / 1e6:>12.1f} "
            f"{r['training_seconds']:>8.1f} {r['training_cpu_seconds']:>8.1f} "
            f"{r['training_cpu_seconds'] / r['training_seconds']:>8.2f} {r['accuracy'] * 100:>7.1f}% "
            f"{ratio:>10.2f}x"
        )
    if a.json:
        a.json.write_text(json.dumps({"profile": a.profile, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

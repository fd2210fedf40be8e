"""Reporter benchmark: where a report's time goes, and what the figure layout choice costs.

Runs in one process against the in-process fake services of the contract tests (real
gRPC on 127.0.0.1), so it measures the reporter, not the models:
1. collect (trainer RPCs, Analyze per validation clip, Describe per sample) vs write
   (figures, markdown, HTML, JSON), for the 4-branch fake world;
2. saving the report's figures with a layout engine at creation (drawn once) vs
   ``bbox_inches="tight"`` (drawn twice), interleaved rounds, same figures.
Prints ratios; the machine is shared, so absolute times are indicative only.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUNDS = 3


def _world_report(tmp: Path) -> tuple[float, float, int]:
    from services.reporter.build import ReportSources, collect, write_report
    from services.reporter.settings import ReporterSettings
    from services.reporter.sources.grpc_sources import DescriberSource, EncoderSource, TrainerSource
    from tests.contract.reporter import kit
    from trajlab.config import load_settings

    world = kit.start_world(kit.default_specs())
    try:
        settings = load_settings(ReporterSettings, reports_dir=tmp, describe_samples=4)
        sources = ReportSources(
            trainers={b: TrainerSource(b, t) for b, t in kit.iter_targets(world)},
            encoder=EncoderSource(world.encoder.target),
            describer=DescriberSource(world.describer.target),
            validation=lambda: world.val,
        )
        t0 = time.perf_counter()
        data = collect(sources, settings)
        t1 = time.perf_counter()
        result = write_report(data, tmp)
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, len(result.figure_paths)
    finally:
        world.stop()


def _figure_layouts(tmp: Path) -> tuple[list[float], list[float]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    def draw(layout: str | None) -> plt.Figure:
        fig = plt.figure(figsize=(14.4, 3.9), layout=layout)
        t = np.linspace(0, 2, 20)
        for i in range(4):
            ax = fig.add_subplot(1, 4, i + 1, projection="3d")
            ax.plot(np.cos(t + i), np.sin(t), t, marker="o")
            ax.set_title(f"clip {i}")
        return fig

    once, twice = [], []
    for _ in range(ROUNDS):
        fig = draw("constrained")
        t0 = time.perf_counter()
        fig.savefig(tmp / "a.png", dpi=110)
        once.append(time.perf_counter() - t0)
        plt.close(fig)
        fig = draw(None)
        t0 = time.perf_counter()
        fig.savefig(tmp / "b.png", dpi=110, bbox_inches="tight")
        twice.append(time.perf_counter() - t0)
        plt.close(fig)
    return once, twice


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        collect_s, write_s, n_fig = _world_report(tmp / "r")
        print(f"report (4 branches, 24 clips each, 4 samples each, {n_fig} figures): "
              f"collect {collect_s:.2f} s, write {write_s:.2f} s; write/collect = {write_s / collect_s:.1f}x")
        once, twice = _figure_layouts(tmp)
        m1, m2 = statistics.median(once), statistics.median(twice)
        print(f"3D figure save, median of {ROUNDS}: layout engine {m1:.2f} s, bbox_inches='tight' {m2:.2f} s; "
              f"tight/engine = {m2 / m1:.2f}x")


if __name__ == "__main__":
    main()

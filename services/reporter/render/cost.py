"""The report's one cost section, "Cost beside quality": per run (and branch mean) the parameters,
model size, FLOPs per clip, training wall time and CPU-seconds, epochs and clips/s, served p50/p99
latency and accuracy with the Pareto flags; the latency by source; the Pareto figure. The figures
come from services.reporter.costs."""

from __future__ import annotations

from pathlib import Path

from services.reporter.costs import CLIENT, SERVER, BranchCost, RunCost, branch_costs, run_cost
from services.reporter.model import ReportData
from services.reporter.render.blocks import MISSING, Figure, Para, Section, Table, ms, pct
from services.reporter.render.figures import FigureRef, _plt, _save, branch_colors

NOT_MEASURED = "not measured"
FIGURE_KEY = "cost_pareto"
TITLE = "Cost beside quality"
ANCHOR = "cost"


def _si(v: float | None, unit: str) -> str:
    if v is None:
        return NOT_MEASURED
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.2f} {prefix}{unit}"
    return f"{v:.0f} {unit}"


def _seconds(v: float | None) -> str:
    if v is None:
        return NOT_MEASURED
    m, s = divmod(round(v), 60)
    return f"{m} min {s:02d} s" if m else f"{v:.1f} s"


def _ms(v: float | None) -> str:
    return NOT_MEASURED if v is None else f"{v:.2f}"


def _front(on: bool | None) -> str:
    return "n/a" if on is None else ("yes" if on else "no")


def _pareto(c: BranchCost) -> list[str]:
    return [_front(c.pareto_latency), _front(c.pareto_compute)]


def _run_row(c: RunCost, label: str, pareto: list[str]) -> list[str]:
    """One run's row; trainer figures read "missing" when the run has no results at all."""
    def trainer(text: str) -> str:
        return text if c.has_results else MISSING

    return [
        label,
        trainer(NOT_MEASURED if c.parameters is None else f"{c.parameters:,.0f}"),
        trainer(NOT_MEASURED if c.model_bytes is None else f"{c.model_bytes / 1e6:.2f}"),
        trainer(_si(c.flops_per_clip, "FLOP")),
        trainer(_seconds(c.training_seconds)),
        trainer(NOT_MEASURED if c.training_cpu_seconds is None else f"{c.training_cpu_seconds:.1f}"),
        MISSING if c.epochs is None else str(c.epochs),
        MISSING if c.clips_per_second is None else f"{c.clips_per_second:.1f}",
        _ms(c.latency_p50_ms),
        _ms(c.latency_p99_ms),
        c.latency_source or NOT_MEASURED,
        NOT_MEASURED if c.test_accuracy is None else pct(c.test_accuracy),
        *pareto,
    ]


def _mean_row(c: BranchCost) -> list[str]:
    """A branch's mean over its seed runs (the figures its Pareto flags compare)."""
    return [
        f"{c.branch} (mean of {len(c.runs)} runs)",
        NOT_MEASURED if c.parameters is None else f"{c.parameters:,.0f}",
        "",
        _si(c.flops_per_clip, "FLOP"),
        _seconds(c.training_seconds),
        NOT_MEASURED if c.training_cpu_seconds is None else f"{c.training_cpu_seconds:.1f}",
        "",
        "",
        _ms(c.latency_p50_ms),
        _ms(c.latency_p99_ms),
        c.latency_source or NOT_MEASURED,
        NOT_MEASURED if c.test_accuracy is None else pct(c.test_accuracy),
        *_pareto(c),
    ]


def _cost_rows(data: ReportData, costs: list[BranchCost]) -> list[list[str]]:
    """A row per run; a branch with several seed runs adds its mean row, which carries the flags."""
    rows = []
    for c in costs:
        runs = [run_cost(data.branches[name]) for name in c.runs]
        if len(runs) == 1:
            rows.append(_run_row(runs[0], runs[0].run, _pareto(c)))
            continue
        rows.extend(_run_row(r, r.run, ["", ""]) for r in runs)
        rows.append(_mean_row(c))
    return rows


def _latency_rows(data: ReportData) -> list[list[str]]:
    """Per run, both latency sources side by side (the cost table shows the first available)."""
    rows = []
    for b in data.branches.values():
        p, c = b.latency, b.client_latency
        reason = next((m.reason for m in b.missing if m.section == "serving latency"), "")
        rows.append(
            [
                b.name,
                ms(p.p50_ms) if p else MISSING,
                ms(p.p99_ms) if p else MISSING,
                f"{p.requests:.0f}" if p and p.requests is not None else MISSING,
                ms(c.p50_ms) if c else MISSING,
                ms(c.p99_ms) if c else MISSING,
                f"{c.requests:.0f}" if c and c.requests is not None else MISSING,
                "" if p else reason,
            ]
        )
    return rows


COST_COLUMNS = (
    "branch / run",
    "parameters",
    "model.onnx (MB)",
    "FLOPs/clip",
    "training time",
    "training CPU-s",
    "epochs",
    "mean clips/s",
    "served p50 (ms)",
    "served p99 (ms)",
    "latency source",
)
LATENCY_COLUMNS = (
    "run",
    "server p50 (ms)",
    "server p99 (ms)",
    "server requests",
    "client p50 (ms)",
    "client p99 (ms)",
    "client calls",
    "server figures missing because",
)


def cost_section(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    """Everything a branch costs, in one place: a table per run (and branch mean) of its training and
    serving cost beside its accuracy with the Pareto flags, the latency by source, the Pareto figure."""
    costs = branch_costs(data)
    if not costs:
        return Section(TITLE, ANCHOR, [Para("No branches: nothing to compare.")])
    split = data.validation.split if data.validation is not None else "evaluation"
    sources = sorted({c.latency_source for c in costs if c.latency_source})
    blocks: list = [
        Para(
            "What each branch costs beside what it scores, per run and, for a branch with several seed "
            "runs, their mean. Parameters, model.onnx size and FLOPs per clip (one forward pass at the "
            "profile's clip size, torch's FlopCounterMode: 2 per multiply-add of the convolutions and "
            "matrix products), training wall time and CPU-seconds (the trainer process's CPU time over "
            "the training epochs) come from the trainers' results, epochs and clips/s from their "
            f"history; results from before a figure was counted say '{NOT_MEASURED}', a run without "
            f"results '{MISSING}'."
        ),
        Para(_latency_sentence(sources)),
        Table(
            [*COST_COLUMNS, f"{split} accuracy", "Pareto: latency", "Pareto: compute"],
            _cost_rows(data, costs),
            caption="Pareto (per branch, seed runs averaged): no other branch is at least as accurate "
            "and at most as costly (p50 latency; training CPU-seconds) while better on one of them; "
            "n/a: a figure is missing.",
        ),
        Table(
            list(LATENCY_COLUMNS),
            _latency_rows(data),
            caption="Serving latency per branch, by source. Server: the encoder's latency histogram in "
            "Prometheus, over every request since the encoder started (p50/p99 by histogram_quantile, "
            "so resolved to its buckets). Client: Analyze round trips the reporter timed during its "
            "evaluation.",
        ),
    ]
    partial = [f"{c.branch}: {', '.join(c.partial)}" for c in costs if c.partial]
    if partial:
        blocks.append(Para("Averaged over the runs that measured them: " + "; ".join(partial) + "."))
    if FIGURE_KEY in figs:
        blocks.append(Figure(figs[FIGURE_KEY]))
    else:
        blocks.append(Para("Pareto figure: no branch has both a test accuracy and a cost figure."))
    return Section(TITLE, ANCHOR, blocks)


def _latency_sentence(sources: list[str]) -> str:
    if not sources:
        return f"Served latency: {NOT_MEASURED} (neither Prometheus nor the reporter's own Analyze calls)."
    parts = []
    if SERVER in sources:
        parts.append(
            f"'{SERVER}': the encoder's trajlab_encoder_inference_seconds, p50/p99 by histogram_quantile "
            "over every request since the encoder started"
        )
    if CLIENT in sources:
        parts.append(
            f"'{CLIENT}': without Prometheus, the reporter's timing of the Analyze calls it made one at a "
            "time to score each run on the test clips (round trip, so network and decoding included)"
        )
    return "Served latency source: " + "; ".join(parts) + "."


def cost_figure(data: ReportData, out: Path) -> FigureRef | None:
    """Accuracy against served latency and against training CPU-seconds, Pareto front marked."""
    costs = [c for c in branch_costs(data) if c.test_accuracy is not None]
    panels = (
        ("latency_p50_ms", "pareto_latency", "served latency p50 (ms)"),
        ("training_cpu_seconds", "pareto_compute", "training compute (CPU-seconds)"),
    )
    if not any(getattr(c, attr) is not None for c in costs for attr, _, _ in panels):
        return None
    split = data.validation.split if data.validation is not None else "evaluation"
    plt = _plt()
    colors = branch_colors([c.branch for c in costs])
    with plt.style.context("seaborn-v0_8-whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), layout="constrained")
        for ax, (attr, flag, label) in zip(axes, panels, strict=True):
            pts = [c for c in costs if getattr(c, attr) is not None]
            for c in pts:
                on = bool(getattr(c, flag))
                x, y = getattr(c, attr), c.test_accuracy * 100  # type: ignore[operator]
                ax.scatter(
                    x,
                    y,
                    s=70 if on else 40,
                    color=colors[c.branch],
                    marker="o" if on else "x",
                    edgecolors="black" if on else None,
                    zorder=3,
                )
                ax.annotate(c.branch, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
            front = sorted((getattr(c, attr), c.test_accuracy * 100) for c in pts if getattr(c, flag))  # type: ignore[operator]
            if len(front) > 1:
                ax.step(
                    *zip(*front, strict=True),
                    where="post",
                    color="black",
                    linewidth=0.8,
                    linestyle="--",
                    zorder=2,
                )
            missing = [c.branch for c in costs if getattr(c, attr) is None]
            ax.set_xlabel(label + (f"; {NOT_MEASURED}: {', '.join(missing)}" if missing else ""))
            ax.set_ylabel(f"{split} accuracy (%)")
            ax.set_title(f"Accuracy against {label.split(' (')[0]}")
        fig.suptitle("Cost beside quality: circled = on the Pareto front (no branch beats it on both)")
        path = out / f"{FIGURE_KEY}.png"
        _save(fig, path)
    return FigureRef(
        FIGURE_KEY,
        path,
        "Test accuracy against served latency and against training compute; "
        "circled branches are on the Pareto front, crosses are beaten on both by another.",
    )

"""The report's "Robustness" section and heatmap, from services.reporter.robustness (no scoring here)."""

from __future__ import annotations

import math
from pathlib import Path

from services.reporter.model import ReportData
from services.reporter.render.blocks import MISSING, Figure, Para, Section, Table, pct, pct_value
from services.reporter.render.figures import DPI, FigureRef, _plt
from services.reporter.robustness import RobustnessResult
from services.reporter.stats import Interval

FIGURE_KEY = "robustness_heatmap"


def drop_text(iv: Interval, *, frac: bool) -> str:
    """``+4.4 [+1.2, +7.5]``: a drop in points (accuracy, ``frac``) or % of extent (MAE)."""
    scale = 100.0 if frac else 1.0
    if not math.isfinite(iv.mean):
        return MISSING
    point = f"{iv.mean * scale:+.1f}"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return point
    return f"{point} [{iv.low * scale:+.1f}, {iv.high * scale:+.1f}]"


def _significant(iv: Interval) -> bool:
    return math.isfinite(iv.low) and (iv.low > 0 or iv.high < 0)


def robustness_section(data: ReportData, figs: dict[str, FigureRef]) -> Section | None:
    """The section, or None when the stress sets were not enabled (no section at all)."""
    res: RobustnessResult | None = getattr(data, "robustness", None)
    if res is None:
        return None
    blocks: list = [
        Para(
            f"Every branch's served model on stress sets of {res.samples} clips each: the profile's dataset "
            "with one factor changed (below). The drop is the test split's accuracy minus the set's, in "
            "points, and the rise the set's forecast MAE minus the test split's (% of extent), with 95 % "
            "percentile-bootstrap intervals over clips: paired clip by clip where the set shows the test "
            "clips' own trajectories in a harder scene, as independent samples (marked *) otherwise. "
            "Bold: the interval excludes 0."
        ),
        Table(["set", "what changes"], [[n, d] for n, d in res.sets.items()]),
    ]
    rows = []
    for b, (clips, acc, mae) in res.test.items():
        rows.append([b, "test split", str(clips), pct(acc), "", pct_value(mae), ""])
        for name in res.sets:
            r = res.row(b, name)
            if r is None:
                why = res.missing.get(f"{b}/{name}", "not scored")
                rows.append([b, name, MISSING, MISSING, why, MISSING, ""])
                continue
            drop = drop_text(r.accuracy_drop, frac=True)
            rise = drop_text(r.mae_rise, frac=False)
            rows.append(
                [
                    b,
                    name + ("" if r.paired else " *"),
                    str(r.clips),
                    pct(r.accuracy),
                    f"**{drop}**" if _significant(r.accuracy_drop) else drop,
                    pct_value(r.mae_pct),
                    f"**{rise}**" if _significant(r.mae_rise) else rise,
                ]
            )
    headers = [
        "branch",
        "set",
        "clips",
        "accuracy",
        "drop (points, 95 % CI)",
        "MAE (% ext)",
        "MAE rise (95 % CI)",
    ]
    blocks.append(Table(headers, rows, caption="Robustness of the served models"))
    if FIGURE_KEY in figs:
        blocks.append(Figure(figs[FIGURE_KEY]))
    for key, why in res.missing.items():
        if "/" not in key:
            blocks.append(Para(f"{key}: not scored on the stress sets ({why})."))
    return Section("Robustness", "robustness", blocks)


def robustness_figure(data: ReportData, out: Path) -> FigureRef | None:
    """Heatmap of the accuracy drop (points) per branch x stress set; None without rows."""
    res: RobustnessResult | None = getattr(data, "robustness", None)
    if res is None or not res.rows:
        return None
    import numpy as np

    branches = [b for b in res.test if any(r.branch == b for r in res.rows)]
    sets = list(res.sets)
    grid = np.full((len(branches), len(sets)), np.nan)
    for i, b in enumerate(branches):
        for j, s in enumerate(sets):
            r = res.row(b, s)
            if r is not None:
                grid[i, j] = r.accuracy_drop.mean * 100.0
    plt = _plt()
    lim = max(5.0, float(np.nanmax(np.abs(grid))))
    fig, ax = plt.subplots(figsize=(1.3 * len(sets) + 2.5, 0.6 * len(branches) + 1.8), layout="constrained")
    im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    for i in range(len(branches)):
        for j in range(len(sets)):
            r = res.row(branches[i], sets[j])
            text = "n/a" if r is None else f"{grid[i, j]:+.1f}\n({r.accuracy * 100:.0f} %)"
            dark = r is not None and abs(grid[i, j]) > 0.6 * lim  # white on the deep colours
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(sets)), sets, rotation=30, ha="right")
    ax.set_yticks(range(len(branches)), branches)
    ax.set_title("Accuracy drop from the test split (points; the set's accuracy)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="drop (points, red: worse)")
    path = out / f"{FIGURE_KEY}.png"
    fig.savefig(path, dpi=DPI, facecolor="white")
    plt.close(fig)
    return FigureRef(FIGURE_KEY, path, "Accuracy drop per branch and stress set")

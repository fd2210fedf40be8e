"""The report's PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.reporter.model import (
    ACCURACY_CRITERION,
    MAE_PCT_CRITERION,
    BranchReport,
    ReportData,
)

DPI = 110  # dots per inch; figures are sized in inches below
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
_BASELINE_GREY = "#9a9a9a"


@dataclass(frozen=True)
class FigureRef:
    """A written figure: key for the document, path, caption."""

    key: str
    path: Path
    caption: str
    branch: str = ""


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def branch_colors(names: list[str]) -> dict[str, str]:
    return {b: _PALETTE[i % len(_PALETTE)] for i, b in enumerate(names)}


def _save(fig, path: Path) -> None:  # type: ignore[no-untyped-def]
    # Figures are made with layout="constrained", which keeps labels on the canvas (bench/bench_reporter.py:
    # no faster than bbox_inches="tight", but the canvas size stays the one asked for).
    fig.savefig(path, dpi=DPI, facecolor="white")
    _plt().close(fig)


def render_figures(data: ReportData, out: Path) -> list[FigureRef]:
    """Write every figure the data allows; returns them in document order."""
    plt = _plt()
    with plt.style.context("seaborn-v0_8-whitegrid"):
        figs: list[FigureRef] = []
        colors = branch_colors(list(data.branches))
        figs += _curves(data, out, colors)
        figs += _bars(data, out, colors)
        for b in data.branches.values():
            f = _confusion(b, data, out)
            if f is not None:
                figs.append(f)
        for b in data.branches.values():
            f = _trajectories(b, out, colors[b.name])
            if f is not None:
                figs.append(f)
        from services.reporter.render.robustness import robustness_figure

        f = robustness_figure(data, out)
        if f is not None:
            figs.append(f)
    from services.reporter.render.cost import cost_figure  # it imports this module's helpers

    if (f := cost_figure(data, out)) is not None:
        figs.append(f)
    return figs


_CURVE_FIGS = (
    ("loss", "Loss per epoch (solid: training, dashed: validation)", ("train_loss", "val_loss"), "loss"),
    ("accuracy", "Validation accuracy per epoch", ("val_accuracy",), "validation accuracy (%)"),
    ("mae", "Validation forecast MAE per epoch", ("forecast_mae_pct",), "forecast MAE (% of extent)"),
)


def _curves(data: ReportData, out: Path, colors: dict[str, str]) -> list[FigureRef]:
    plt = _plt()
    with_curves = [b for b in data.branches.values() if b.curves is not None and b.curves.epochs]
    if not with_curves:
        return []
    refs = []
    for key, title, metrics, ylabel in _CURVE_FIGS:
        fig, ax = plt.subplots(figsize=(7.0, 4.0), layout="constrained")
        for b in with_curves:
            assert b.curves is not None
            for j, m in enumerate(metrics):
                ys = b.curves.series.get(m, [])
                if m == "val_accuracy":
                    ys = [y * 100 for y in ys]
                if not any(math.isfinite(y) for y in ys):
                    continue
                ax.plot(
                    b.curves.epochs,
                    ys,
                    color=colors[b.name],
                    linestyle="-" if j == 0 else "--",
                    marker="o",
                    markersize=3.5,
                    label=b.name if j == 0 else None,
                )
        if key in ("accuracy", "mae"):
            _criterion(ax, key)
            ax.set_ylim(*((0, 100) if key == "accuracy" else (0, None)))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="best", fontsize=8, frameon=True)
        path = out / f"curves_{key}.png"
        _save(fig, path)
        refs.append(FigureRef(f"curves_{key}", path, title))
    return refs


def _baselines(data: ReportData) -> list:
    for b in data.branches.values():
        if b.results is not None and len(b.results.baselines):
            return list(b.results.baselines)
    return []


def _bar_values(
    key: str, branches: list[BranchReport], baselines: list, colors: dict[str, str]
) -> tuple[list[str], list[str], list[float], list[float]]:
    """Labels, colours, trainer (or baseline) and served values of the ``key`` bars; nan = missing."""
    labels: list[str] = []
    bar_colors: list[str] = []
    trainer_vals: list[float] = []
    served_vals: list[float] = []
    for b in branches:
        labels.append(b.name)
        bar_colors.append(colors[b.name])
        if key == "accuracy":
            trainer_vals.append(b.results.accuracy * 100 if b.results is not None else math.nan)
            served_vals.append(b.served.metrics.accuracy * 100 if b.served is not None else math.nan)
        else:
            trainer_vals.append(b.results.forecast_mae_pct if b.results is not None else math.nan)
            served_vals.append(b.served.metrics.forecast_mae_pct if b.served is not None else math.nan)
    for bl in baselines:
        v = bl.accuracy * 100 if key == "accuracy" else bl.forecast_mae_pct
        if (key == "accuracy" and bl.accuracy < 0) or (key == "mae" and bl.forecast_mae < 0):
            continue
        labels.append(bl.name.replace("_", " "))
        bar_colors.append(_BASELINE_GREY)
        trainer_vals.append(v)
        served_vals.append(math.nan)
    return labels, bar_colors, trainer_vals, served_vals


def _annotate_bars(ax: Any, bars: Any, vals: list[float]) -> None:
    for rect, v in zip(bars, vals, strict=True):
        if math.isfinite(v):
            ax.annotate(
                f"{v:.1f}",
                (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 1),
                textcoords="offset points",
            )
        else:
            rect.set_visible(False)  # a missing figure is no bar, not a zero bar


def _criterion(ax: Any, key: str) -> None:
    """The seed's success line on an accuracy (percent) or MAE (% of extent) axis."""
    if key == "accuracy":
        value, label = ACCURACY_CRITERION * 100, f"criterion > {ACCURACY_CRITERION * 100:.0f} %"
    else:
        value, label = MAE_PCT_CRITERION, f"criterion < {MAE_PCT_CRITERION:.0f} %"
    ax.axhline(value, color="black", linewidth=0.9, linestyle=":", label=label)


def _criterion_line(ax: Any, key: str) -> None:
    """The seed's criterion on the ``key`` bars, and the axis labels and title."""
    _criterion(ax, key)
    if key == "accuracy":
        ax.set_ylabel("validation accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title("Classification accuracy: branches and baselines")
    else:
        ax.set_ylabel("forecast MAE (% of extent, lower is better)")
        ax.set_title("Forecast MAE: branches and physics baselines")


def _bars(data: ReportData, out: Path, colors: dict[str, str]) -> list[FigureRef]:
    plt = _plt()
    import numpy as np

    branches = [b for b in data.branches.values() if b.results is not None or b.served is not None]
    if not branches:
        return []
    baselines = _baselines(data)
    refs = []
    for key in ("accuracy", "mae"):
        labels, bar_colors, trainer_vals, served_vals = _bar_values(key, branches, baselines, colors)
        x = np.arange(len(labels))
        width = 0.38
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.2), layout="constrained")
        tb = ax.bar(
            x - width / 2,
            np.nan_to_num(trainer_vals, nan=0.0),
            width,
            color=bar_colors,
            label="trainer's evaluation / baseline",
        )
        sb = ax.bar(
            x + width / 2,
            np.nan_to_num(served_vals, nan=0.0),
            width,
            color=bar_colors,
            alpha=0.45,
            hatch="//",
            edgecolor="white",
            label="served model via encoder",
        )
        _annotate_bars(ax, tb, trainer_vals)
        _annotate_bars(ax, sb, served_vals)
        _criterion_line(ax, key)
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.legend(loc="best", fontsize=8, frameon=True)
        path = out / f"bars_{key}.png"
        _save(fig, path)
        refs.append(FigureRef(f"bars_{key}", path, ax.get_title()))
    return refs


def _confusion(b: BranchReport, data: ReportData, out: Path) -> FigureRef | None:
    if b.results is None or not len(b.results.confusion_matrix):
        return None
    plt = _plt()
    import numpy as np

    names = list(b.results.class_names) or list(data.class_names)
    k = len(names)
    cm = np.asarray(b.results.confusion_matrix, dtype=np.int64).reshape(k, k)
    row = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, np.maximum(row, 1))
    fig, ax = plt.subplots(figsize=(4.6, 3.9), layout="constrained")
    ax.grid(False)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if frac[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    title = f"{b.name}: confusion matrix ({int(cm.sum())} clips, acc {b.results.accuracy * 100:.1f} %)"
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    path = out / f"confusion_{b.name}.png"
    _save(fig, path)
    return FigureRef(f"confusion_{b.name}", path, title, b.name)


def _trajectories(b: BranchReport, out: Path, color: str) -> FigureRef | None:
    samples = b.samples[:4]
    if not samples:
        return None
    plt = _plt()
    n = len(samples)
    fig = plt.figure(figsize=(3.6 * n, 3.9), layout="constrained")
    for i, s in enumerate(samples):
        ax = fig.add_subplot(1, n, i + 1, projection="3d")
        obs, fut = s.observed, s.truth_future
        ax.plot(
            obs[:, 0],
            obs[:, 1],
            obs[:, 2],
            color="#8c8c8c",
            linewidth=1.4,
            marker="o",
            markersize=2,
            label="observed",
        )
        # Join the last observed point to the future so the path reads as one trajectory.
        tf = [obs[-1:], fut]
        import numpy as np

        truth = np.concatenate(tf)
        ax.plot(
            truth[:, 0],
            truth[:, 1],
            truth[:, 2],
            color="#111111",
            linewidth=1.4,
            linestyle="--",
            marker="o",
            markersize=3,
            label="true future",
        )
        if s.forecast is not None and len(s.forecast):
            fc = np.concatenate([obs[-1:], s.forecast])
            ax.plot(
                fc[:, 0],
                fc[:, 1],
                fc[:, 2],
                color=color,
                linewidth=1.2,
                marker="x",
                markersize=5,
                label="forecast",
            )
        pred = s.predicted_class or "?"
        mark = (
            "" if not s.predicted_class else (" (right)" if s.predicted_class == s.true_class else " (wrong)")
        )
        ax.set_title(f"clip {s.index}: {s.true_class}\npredicted {pred}{mark}", fontsize=9)
        ax.set_xlabel("x", fontsize=8, labelpad=-2)
        ax.set_ylabel("y", fontsize=8, labelpad=-2)
        ax.set_zlabel("z", fontsize=8, labelpad=-2)
        ax.tick_params(labelsize=6, pad=0)
        if i == 0:
            ax.legend(loc="upper left", fontsize=7)
    title = f"{b.name}: observed, true and forecast positions (world units)"
    fig.suptitle(title, fontsize=11)
    path = out / f"trajectories_{b.name}.png"
    _save(fig, path)
    return FigureRef(f"trajectories_{b.name}", path, title, b.name)

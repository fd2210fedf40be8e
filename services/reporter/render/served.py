"""The report's "Served model vs the trainer's evaluation" section: each run's served ONNX model
scored by the reporter through the encoder beside the trainer's own figure (a difference points at
export or preprocessing drift)."""

from __future__ import annotations

from services.reporter.model import BranchReport, ReportData
from services.reporter.render.blocks import MISSING, Para, Section, Table, num, pct, pct_value, points


def _unserved_row(data: ReportData, b: BranchReport) -> list[str]:
    """A run the encoder did not score: the trainer's figures and why."""
    r = b.results
    reason = next((m.reason for m in b.missing if m.section == "served model"), "")
    if not reason:
        report_wide = ("served model", "validation clips")
        reason = next((m.reason for m in data.missing if m.section in report_wide), "")
    return [
        b.name,
        str(r.model_version) if r is not None else MISSING,
        MISSING,
        pct(r.accuracy) if r is not None else MISSING,
        MISSING,
        "",
        pct_value(r.forecast_mae_pct) if r is not None else MISSING,
        MISSING,
        "",
        reason,
    ]


def _served_row(b: BranchReport) -> list[str]:
    r, s = b.results, b.served
    assert s is not None
    m = s.metrics
    return [
        b.name,
        str(r.model_version) if r is not None else MISSING,
        str(s.model_version),
        pct(r.accuracy) if r is not None else MISSING,
        pct(m.accuracy),
        points(m.accuracy - r.accuracy, frac=True) if r is not None else "",
        pct_value(r.forecast_mae_pct) if r is not None else MISSING,
        pct_value(m.forecast_mae_pct),
        points(m.forecast_mae_pct - r.forecast_mae_pct, frac=False) if r is not None else "",
        f"{m.samples} clips; MAE {num(m.forecast_mae)}, RMSE {num(m.forecast_rmse)}, ADE "
        f"{num(m.ade)}, "
        f"FDE {num(m.fde)} (world)",
    ]


def served_section(data: ReportData) -> Section:
    rows = [
        _served_row(b) if b.served is not None else _unserved_row(data, b) for b in data.branches.values()
    ]
    return Section(
        "Served model vs the trainer's evaluation",
        "served",
        [
            Para(
                "The validation clips sent one by one through the encoder's Analyze RPC, as a user's "
                "would be, "
                "and scored by the reporter; beside it the trainer's own figure for the same branch. A "
                "difference points at export or preprocessing drift."
            ),
            Table(
                [
                    "branch",
                    "trainer version",
                    "served version",
                    "trainer accuracy",
                    "served accuracy",
                    "Δ (points)",
                    "trainer MAE (% extent)",
                    "served MAE (% extent)",
                    "Δ (points)",
                    "detail",
                ],
                rows,
            ),
        ],
    )

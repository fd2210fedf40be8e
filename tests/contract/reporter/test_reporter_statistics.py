"""The report's Statistics section and verdict, built from fake services over real gRPC."""

from __future__ import annotations

import json
from collections.abc import Callable

from services.reporter.build import ReportSources, build_report
from services.reporter.settings import ReporterSettings


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _rows(part: str, first: str) -> list[list[str]]:
    out = []
    for line in part.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("*") == first:
            out.append(cells)
    return out


def test_close_branches_are_reported_as_a_tie_and_the_failed_run_is_named(
    make_sources: Callable[..., ReportSources], settings: ReporterSettings
) -> None:
    # b1 and b2 each get 3 of 24 clips wrong, different ones; b3 gets 6 wrong; b4 failed.
    result = build_report(make_sources(), settings)
    md = result.markdown_path.read_text()
    assert result.verdict == "statistically tied for first: b2, b1, b3"
    assert "b2 vs b1: Holm-adjusted p = 1" in result.verdict_reason
    assert "**Verdict on the 24 validation clips: statistically tied for first: b2, b1, b3.**" in md
    stats = _section(md, "Statistics")
    b1 = _rows(stats, "b1")[0]
    assert b1[2] == "24" and b1[3].startswith("87.50 % [")  # 21 of 24, with its Clopper-Pearson interval
    pair = _rows(stats, "b1 vs b2")[0]
    assert pair[2] == "3 / 3" and pair[4] == "1.000"  # McNemar: 3 discordant each way
    assert "What the test split can resolve: with 24 clips" in md
    assert "left out: b4 (branch failed: loss became NaN at epoch 2)" in stats
    doc = json.loads(result.json_path.read_text())["statistics"]
    assert doc["verdict"]["tied"] == ["b2", "b1", "b3"] and doc["runs_left_out"] == {
        "b4": "branch failed: loss became NaN at epoch 2"
    }


def test_a_consistently_better_forecast_wins_on_the_forecast_rule(
    make_sources: Callable[..., ReportSources], settings: ReporterSettings
) -> None:
    # b2's forecast is off by 0.02 on every clip, b1's by 0.05, b3's by 0.10: Wilcoxon on 24 clips.
    result = build_report(make_sources(), settings, winner_rule="mae_then_accuracy")
    assert result.verdict == "winner: b2"
    assert "significantly better than every other branch" in result.verdict_reason
    assert "Wilcoxon" in result.verdict_reason
    md = result.markdown_path.read_text()
    assert "**Verdict on the 24 validation clips: winner: b2.**" in md

"""Rendering details a reader would notice: equations stay code, cells stay in their table."""

from __future__ import annotations

from services.reporter.render.document import Table, pct, pct_value
from services.reporter.render.html import inline
from services.reporter.render.markdown import render_table


def test_equation_powers_stay_code_in_html() -> None:
    out = str(inline("**b1** wins; `x(t) = 4.9*t**2 + t**3`"))
    assert out == "<strong>b1</strong> wins; <code>x(t) = 4.9*t**2 + t**3</code>"


def test_html_is_escaped() -> None:
    assert str(inline("<script>")) == "&lt;script&gt;"


def test_pipes_do_not_break_markdown_tables() -> None:
    md = render_table(Table(["a", "b"], [["x | y", "z"]]))
    assert md.splitlines()[-1] == "| x \\| y | z |"


def test_missing_numbers_are_written_as_missing() -> None:
    assert pct(None) == "missing" and pct_value(float("nan")) == "missing"
    assert pct(0.875) == "87.50 %"


def _data(*results: object) -> object:
    from services.reporter.model import BranchReport, ReportData, WinnerDecision
    from trajlab.profiles import CLASS_NAMES

    branches = {
        f"b{i}": BranchReport(name=f"b{i}", trainer_target="x", results=r)  # type: ignore[arg-type]
        for i, r in enumerate(results, 1)
    }
    winner = WinnerDecision(rule="r", rule_text="r", winner="", ranking=[], justification="")
    return ReportData(
        created_at="2026-11-22T00:00:00Z",
        branches=branches,
        class_names=CLASS_NAMES,
        winner=winner,
        missing=[],
        sources={},
        validation=None,
    )


def test_results_without_an_observed_track_render_as_not_applicable() -> None:
    # Older runs and models with the track readout off have no observed_track: no crash, no number.
    from services.reporter.render.document import build_document
    from services.reporter.render.markdown import render_markdown
    from trajlab.trainer.v1 import trainer_pb2

    old = trainer_pb2.EvaluationResults(forecast_mae_pct=9.0)
    md = render_markdown(build_document(_data(old, None), []))  # type: ignore[arg-type]
    assert "Baselines on the models' own observed tracks: n/a" in md
    forecast = md.split("## Forecast", 1)[1].split("## Baselines", 1)[0]
    rows = [line for line in forecast.splitlines() if line.startswith(("| b1 ", "| b2 "))]
    assert rows[0].endswith("| n/a |") and rows[1].endswith("| missing |")  # b2 has no results at all

    track = trainer_pb2.ObservedTrack(
        present=True,
        observed_mae_pct=3.0,
        baselines=[trainer_pb2.BaselineResult(name="best_of", forecast_mae=0.1, forecast_mae_pct=7.25)],
    )
    new = trainer_pb2.EvaluationResults(forecast_mae_pct=9.0, observed_track=track)
    md = render_markdown(build_document(_data(new, old), []))  # type: ignore[arg-type]
    own = md.split("applied to each branch's own observed track", 1)[1]
    rows = [line for line in own.splitlines() if line.startswith(("| b1 ", "| b2 "))]
    # A baseline the trainer did not send is missing, not zero.
    assert rows[0] == "| b1 | 9.00 % | 3.00 % | missing | missing | missing | 7.25 % |"
    assert rows[1] == "| b2 | 9.00 % | n/a | n/a | n/a | n/a | n/a |"
    # The track classifier's accuracy alone: n/a where the results do not carry it, not 0 %.
    classification = md.split("## Classification", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in classification.splitlines() if line.startswith(("| b1 ", "| b2 "))]
    assert rows[0].endswith("| n/a |") and rows[1].endswith("| n/a |")
    track.classifier_accuracy = 0.95
    new = trainer_pb2.EvaluationResults(forecast_mae_pct=9.0, observed_track=track)
    md = render_markdown(build_document(_data(new, old), []))  # type: ignore[arg-type]
    classification = md.split("## Classification", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in classification.splitlines() if line.startswith(("| b1 ", "| b2 "))]
    assert rows[0].endswith("| 95.00 % |") and rows[1].endswith("| n/a |")

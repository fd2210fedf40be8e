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

"""The report's renderer-neutral blocks (paragraphs, lists, tables, figures, sections) and the one
place numbers are formatted, so markdown, HTML and the tests agree. Every section module builds on
these; a figure that is missing is written as "missing", never as a number."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from services.reporter.render.figures import FigureRef

MISSING = "missing"


@dataclass
class Para:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    ref: FigureRef


Block = Para | Bullets | Table | Figure


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Document:
    title: str
    sections: list[Section]


# --- number formatting (one place, so the markdown and the tests agree) ---------------------------


def pct(frac: float | None) -> str:
    """A 0..1 fraction as a percentage with two decimals, e.g. 0.875 -> '87.50 %'."""
    if frac is None or not math.isfinite(frac):
        return MISSING
    return f"{frac * 100:.2f} %"


def pct_value(v: float | None) -> str:
    """A value already in percent, e.g. 12.345 -> '12.35 %'."""
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.2f} %"


def num(v: float | None, digits: int = 4) -> str:
    """A world-unit figure with ``digits`` decimals."""
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.{digits}f}"


def points(d: float | None, *, frac: bool) -> str:
    """A signed difference in percentage points."""
    if d is None or not math.isfinite(d):
        return MISSING
    v = d * 100 if frac else d
    return f"{v:+.2f}"


def ms(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return MISSING
    return f"{v:.2f}"


def megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.2f}"


def duration(seconds: float) -> str:
    if seconds <= 0 or not math.isfinite(seconds):
        return MISSING
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{seconds:.1f} s"


def yes_no(v: bool | None) -> str:
    return MISSING if v is None else ("yes" if v else "no")

"""What every collection stage returns: the report-wide gaps and findings it found."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.reporter.model import Missing


@dataclass(kw_only=True)
class StageOutput:
    """A stage's report-level output; per-run gaps go to each ``BranchReport.missing``."""

    missing: list[Missing] = field(default_factory=list)  # in the order found
    notes: list[str] = field(default_factory=list)  # for the report's Findings section

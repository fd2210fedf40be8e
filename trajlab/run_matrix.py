"""The run matrix file: branches x training seeds, one run per cell, numbered branch-major.

Read by the trainers' Indexed Job (``services.trainer.run_matrix`` picks a pod's cell by its
completion index) and by the reporter (``TRAJLAB_REPORTER_RUN_MATRIX_FILE``: the runs to report
from the store are the matrix's, ``<branch>@s<seed>``)::

    branches: [b1, b2, b3, b4]   # names from the branches file
    seeds: [0, 1, 2]             # training seeds (weight init and data order)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trajlab.config import read_yaml, validate_model
from trajlab.errors import ConfigError
from trajlab.runs import run_name


@dataclass(frozen=True)
class Run:
    """One cell of the matrix."""

    index: int
    branch: str
    seed: int


class RunMatrix(BaseModel):
    """Branches x seeds, as written in the matrix file."""

    model_config = ConfigDict(extra="forbid")

    branches: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)

    @field_validator("branches", "seeds")
    @classmethod
    def _unique(cls, v: list[Any]) -> list[Any]:
        dup = sorted({str(x) for x in v if v.count(x) > 1})
        if dup:
            raise ValueError(f"listed more than once: {', '.join(dup)}")
        return v

    @field_validator("seeds")
    @classmethod
    def _non_negative(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if s < 0]
        if bad:
            raise ValueError(f"seeds must be >= 0, got {bad}")
        return v

    def runs(self) -> list[Run]:
        """Every run, in index order (branch-major)."""
        n = len(self.seeds)
        return [
            Run(index=bi * n + si, branch=b, seed=s)
            for bi, b in enumerate(self.branches)
            for si, s in enumerate(self.seeds)
        ]

    def pick(self, index: int) -> Run:
        """The run of a completion index; an index outside the matrix is a ConfigError."""
        runs = self.runs()
        if not 0 <= index < len(runs):
            raise ConfigError(
                f"run_index: {index} is outside the run matrix of {len(self.branches)} branches x "
                f"{len(self.seeds)} seeds (expected 0..{len(runs) - 1}; the Job's completions must "
                f"equal {len(runs)})"
            )
        return runs[index]

    def run_names(self) -> list[str]:
        """Every run's name (``b1@s0``, ...), in index order."""
        return [run_name(r.branch, r.seed) for r in self.runs()]


def load_run_matrix(path: str | Path) -> RunMatrix:
    """Read and validate a matrix file; errors name the file and the field."""
    return validate_model(RunMatrix, read_yaml(path), str(path))

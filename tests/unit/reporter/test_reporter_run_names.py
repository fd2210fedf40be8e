"""BuildReport takes the run names `trajlab run` asks for (b1@s0) and still refuses names that are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.reporter.servicer import ReporterServicer
from services.reporter.settings import ReporterSettings
from trajlab.config import load_settings
from trajlab.errors import InvalidArgument
from trajlab.reporter.v1 import reporter_pb2


class _Asked(Exception):
    pass


def _servicer(tmp_path: Path, asked: list[Any]) -> ReporterServicer:
    s = ReporterServicer(load_settings(ReporterSettings, reports_dir=tmp_path))

    def build(**kw: Any) -> Any:
        asked.append(kw["branches"])
        raise _Asked

    s.build = build  # type: ignore[method-assign]
    return s


@pytest.mark.parametrize("names", [["b1@s0", "b2@s12"], ["b1-noperc@s0"], ["b1", "b4"]])
def test_run_names_reach_the_build(tmp_path: Path, names: list[str]) -> None:
    asked: list[Any] = []
    with pytest.raises(_Asked):
        _servicer(tmp_path, asked).BuildReport(reporter_pb2.BuildReportRequest(branches=names), None)  # type: ignore[arg-type]
    assert asked == [names]


@pytest.mark.parametrize("bad", ["b1@", "b1@sx", "@s0", "b1@s0@s1", "b 1", "b1/../x"])
def test_other_names_are_refused_naming_the_field(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"branches\[1\]: .* is not a branch or run name"):
        _servicer(tmp_path, []).BuildReport(reporter_pb2.BuildReportRequest(branches=["b1", bad]), None)  # type: ignore[arg-type]

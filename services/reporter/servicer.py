"""ReporterService: translates BuildReport to ``build_report`` and the result back to protobuf."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

import grpc

from services.reporter.build import ReportSources, build_report
from services.reporter.model import ReportResult
from services.reporter.settings import ReporterSettings
from services.reporter.winner import RULES
from trajlab.errors import InvalidArgument, quoted
from trajlab.reporter.v1 import reporter_pb2, reporter_pb2_grpc

log = logging.getLogger(__name__)
# A requested branch name: it is written into the report, so it must look like one. A seed run
# (trajlab.runs: "b1@s0", what `trajlab run` asks for) is a branch name and "@s<seed>".
_BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(@s[0-9]{1,9})?")


def _neg(v: float | None) -> float:
    # The proto marks a missing figure with a negative number.
    return -1.0 if v is None else float(v)


def result_to_proto(r: ReportResult) -> reporter_pb2.BuildReportResponse:
    return reporter_pb2.BuildReportResponse(
        report_dir=str(r.report_dir),
        markdown_path=str(r.markdown_path),
        html_path=str(r.html_path),
        figure_paths=[str(p) for p in r.figure_paths],
        winner=r.winner,
        winner_rule=r.winner_rule,
        summary=[
            reporter_pb2.SummaryRow(
                branch=s.branch,
                accuracy=_neg(s.accuracy),
                forecast_mae_pct=_neg(s.forecast_mae_pct),
                meets_criteria=s.meets_criteria,
                equation_accuracy=_neg(s.equation_accuracy),
                missing_reason=s.missing_reason,
                served_accuracy=_neg(s.served_accuracy),
                served_forecast_mae_pct=_neg(s.served_forecast_mae_pct),
                evaluation_split=s.evaluation_split,
            )
            for s in r.summary
        ],
        missing=[
            reporter_pb2.MissingSection(section=m.section, reason=m.reason, branch=m.branch)
            for m in r.missing
        ],
        json_path=str(r.json_path),
        justification=r.justification,
        verdict=r.verdict,
        verdict_reason=r.verdict_reason,
    )


class ReporterServicer(reporter_pb2_grpc.ReporterServiceServicer):
    """Builds one report per call; calls are serialized (a report reads every service once)."""

    def __init__(
        self,
        settings: ReporterSettings,
        sources_factory: Callable[[], ReportSources] | None = None,
    ) -> None:
        self.settings = settings
        self._sources_factory = sources_factory or (lambda: ReportSources.from_settings(settings))
        self._lock = threading.Lock()
        self.last_result: ReportResult | None = None

    def build(
        self,
        *,
        branches: list[str] | None = None,
        describe_samples: int | None = None,
        winner_rule: str | None = None,
    ) -> ReportResult:
        if winner_rule and winner_rule not in RULES:
            raise InvalidArgument(
                f"winner_rule: unknown rule {quoted(winner_rule)}; known: {', '.join(RULES)}"
            )
        with self._lock:
            sources = self._sources_factory()
            try:
                result = build_report(
                    sources,
                    self.settings,
                    branches=branches or None,
                    describe_samples=describe_samples,
                    winner_rule=winner_rule or None,
                )
            finally:
                sources.close()
            self.last_result = result
            return result

    def BuildReport(
        self, request: reporter_pb2.BuildReportRequest, context: grpc.ServicerContext
    ) -> reporter_pb2.BuildReportResponse:
        if request.describe_samples > 100:
            raise InvalidArgument("describe_samples: at most 100 sample trajectories per branch")
        for i, name in enumerate(request.branches):
            if not _BRANCH_NAME.fullmatch(name):
                raise InvalidArgument(
                    f"branches[{i}]: {quoted(name)} is not a branch or run name "
                    "(letters, digits, '_', '.', '-', at most 64 characters, then optionally @s<seed>)"
                )
        result = self.build(
            branches=list(request.branches),
            describe_samples=request.describe_samples or None,
            winner_rule=request.winner_rule or None,
        )
        return result_to_proto(result)

"""Typed client of the reporter service.

>>> with ReporterClient("127.0.0.1:50054") as rep:
...     report = rep.build_report(describe_samples=3)
...     print(report.markdown_path, report.winner)
...     for row in report.summary:
...         print(row.branch, row.accuracy, row.meets_criteria)

BuildReport writes a new report per call, so it is not retried by the client; its
deadline is long by default (the reporter evaluates every validation clip through
the encoder). Failures raise ``grpc.RpcError`` with the server's status and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from trajlab.clients._channel import DEFAULT_MAX_MESSAGE_BYTES, open_channel
from trajlab.reporter.v1 import reporter_pb2, reporter_pb2_grpc

SERVICE = "trajlab.reporter.v1.ReporterService"
DEFAULT_BUILD_TIMEOUT_SECONDS = 900.0  # seconds; a seed-sized report evaluates ~1,000 clips


def _opt(v: float) -> float | None:
    # The proto marks a missing figure with a negative number.
    return None if v < 0 else v


@dataclass(frozen=True)
class SummaryRow:
    """One branch's line of the summary; None where the figure is missing."""

    branch: str
    accuracy: float | None  # 0..1, trainer's validation evaluation
    forecast_mae_pct: float | None  # percent of trajectory extent
    meets_criteria: bool  # accuracy > 80 % and MAE < 20 %
    equation_accuracy: float | None  # 0..1 over the describer samples
    served_accuracy: float | None  # 0..1, through the encoder
    missing_reason: str
    served_forecast_mae_pct: float | None = None  # percent of extent, through the encoder
    evaluation_split: str = ""  # split of the served figures: "test" (held out) or "val"


@dataclass(frozen=True)
class MissingSection:
    section: str
    reason: str
    branch: str = ""


@dataclass(frozen=True)
class Report:
    """Where a report was written and what it concluded."""

    report_dir: str
    markdown_path: str
    html_path: str
    json_path: str
    figure_paths: list[str]
    winner: str  # "" when no branch has results
    winner_rule: str
    justification: str
    summary: list[SummaryRow] = field(default_factory=list)
    missing: list[MissingSection] = field(default_factory=list)
    verdict: str = ""  # "winner: b2" or "statistically tied for first: b1, b2"
    verdict_reason: str = ""


def report_from_proto(msg: reporter_pb2.BuildReportResponse) -> Report:
    return Report(
        report_dir=msg.report_dir,
        markdown_path=msg.markdown_path,
        html_path=msg.html_path,
        json_path=msg.json_path,
        figure_paths=list(msg.figure_paths),
        winner=msg.winner,
        winner_rule=msg.winner_rule,
        justification=msg.justification,
        verdict=msg.verdict,
        verdict_reason=msg.verdict_reason,
        summary=[
            SummaryRow(
                branch=r.branch,
                accuracy=_opt(r.accuracy),
                forecast_mae_pct=_opt(r.forecast_mae_pct),
                meets_criteria=r.meets_criteria,
                equation_accuracy=_opt(r.equation_accuracy),
                served_accuracy=_opt(r.served_accuracy),
                missing_reason=r.missing_reason,
                served_forecast_mae_pct=_opt(r.served_forecast_mae_pct),
                evaluation_split=r.evaluation_split,
            )
            for r in msg.summary
        ],
        missing=[MissingSection(m.section, m.reason, m.branch) for m in msg.missing],
    )


class ReporterClient:
    """Client of ReporterService on ``target`` ("host:port")."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_BUILD_TIMEOUT_SECONDS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = open_channel(target, max_message_bytes=max_message_bytes)
        self._stub = reporter_pb2_grpc.ReporterServiceStub(self._channel)

    def build_report(
        self,
        *,
        branches: list[str] | None = None,
        describe_samples: int = 0,
        winner_rule: str = "",
        timeout: float | None = None,
    ) -> Report:
        """Build a report now. ``describe_samples`` 0 and ``winner_rule`` "" use the server's defaults."""
        req = reporter_pb2.BuildReportRequest(
            branches=branches or [], describe_samples=describe_samples, winner_rule=winner_rule
        )
        return report_from_proto(self._stub.BuildReport(req, timeout=timeout or self.timeout))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the channel connects (raises grpc.FutureTimeoutError after ``timeout`` seconds)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ReporterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

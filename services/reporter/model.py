"""The report's domain model: what was collected, from where, and what is missing and why.

Everything the renderers show comes from these objects; a figure that could not be
collected is absent here and listed in ``missing`` with its reason, never filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trajlab.trainer.v1 import trainer_pb2

# Success criteria of the seed (DESIGN.md): accuracy above 80 %, forecast MAE below 20 % of extent.
ACCURACY_CRITERION = 0.80  # fraction, strictly greater
MAE_PCT_CRITERION = 20.0  # percent of the trajectory's extent, strictly lower

# Curves every report tries to draw; keys are EpochMetrics field names.
CURVE_METRICS: tuple[str, ...] = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "forecast_mae_pct",
)


@dataclass(frozen=True)
class Missing:
    """A section (or a branch's part of it) that could not be filled, and why."""

    section: str
    reason: str
    branch: str = ""

    def label(self) -> str:
        return f"{self.section} ({self.branch})" if self.branch else self.section


@dataclass
class ValidationSet:
    """The validation clips and their truth, as the trainers scored them.

    positions hold every frame (observed frames first, then the horizon);
    extent is per trajectory, world units, used for the "% of extent" figures.
    """

    clips: np.ndarray  # uint8 (N, T, H, W, C)
    labels: np.ndarray  # int64 (N,), index into class_names
    positions: np.ndarray  # float32 (N, T + horizon, 3), world units
    times: np.ndarray  # float32 (T + horizon,), seconds
    extent: np.ndarray  # float32 (N,), world units
    fps: float  # frames per second of the clips
    class_names: tuple[str, ...]
    manifest_sha256: str = ""
    equations: list[tuple[str, str, str]] = field(default_factory=list)  # true x(t), y(t), z(t)
    # Each clip's generating parameters (trajlab.data.trajectories), for grading equations;
    # empty when the split has none (the parameters are then not graded).
    params: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # where it was loaded from, for the report
    split: str = "val"  # which split of the dataset: "test" (held out) or "val"

    @property
    def frames(self) -> int:
        return int(self.clips.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.positions.shape[1] - self.clips.shape[1])

    def __len__(self) -> int:
        return int(self.clips.shape[0])


@dataclass
class Curves:
    """Per-epoch training curves of one branch and where they came from."""

    epochs: list[int]
    series: dict[str, list[float]]  # metric -> one value per epoch in ``epochs``
    source: str  # "prometheus" or "trainer GetHistory"
    note: str = ""  # e.g. why Prometheus was not used


@dataclass
class ForecastMetrics:
    """Forecast and classification figures over a set of clips (the report's one definition)."""

    samples: int
    accuracy: float  # 0..1
    mean_class_accuracy: float  # 0..1, over classes that have support
    confusion: list[list[int]]  # rows = true class, columns = predicted
    per_class_accuracy: list[float | None]  # None where the class has no support
    forecast_mae: float  # world units
    forecast_rmse: float  # world units
    forecast_mae_pct: float  # percent of extent
    forecast_rmse_pct: float  # percent of extent
    ade: float  # world units
    fde: float  # world units


@dataclass
class ServedEvaluation:
    """The validation split evaluated through the encoder's served ONNX model."""

    metrics: ForecastMetrics
    model_version: int  # the version that answered
    predictions: np.ndarray  # int64 (N,), class index predicted per evaluated clip
    forecasts: np.ndarray  # float32 (N, horizon, 3), world units
    forecast_times: np.ndarray  # float64 (horizon,), seconds
    indices: np.ndarray  # int64 (N,), index of each evaluated clip in the validation set
    client_latency_ms: list[float]  # per Analyze call as the reporter saw it, milliseconds
    # The model's own observed track (N, T, 3) world units and its confidence (N, T); None when
    # the served model exports no track (ModelInfo.has_track).
    tracks: np.ndarray | None = None
    track_confidence: np.ndarray | None = None


@dataclass
class Latency:
    """Serving latency of one branch."""

    p50_ms: float | None
    p99_ms: float | None
    requests: float | None  # requests counted, when known
    source: str  # e.g. "prometheus trajlab_encoder_inference_seconds" or "reporter client"


@dataclass
class SampleDescription:
    """One trajectory sent to the describer and its answer."""

    index: int  # index in the validation set
    true_class: str
    predicted_class: str  # "" when the encoder gave none
    observed: np.ndarray  # (T, 3) world units
    truth_future: np.ndarray  # (horizon, 3) world units
    forecast: np.ndarray | None  # (horizon, 3) world units; None without an encoder forecast
    true_equations: tuple[str, str, str] | None
    equations: tuple[str, str, str] = ("", "", "")
    description: str = ""
    backend_requested: str = ""
    backend_used: str = ""
    model: str = ""
    fallback_used: bool = False
    fallback_reason: str = ""
    scored: bool = False
    parsed: bool = False
    normalized_rmse: float | None = None
    accurate: bool | None = None
    score_error: str = ""
    latency_ms: float | None = None
    error: str = ""  # the RPC error when the describer did not answer
    described_class: str = ""  # the motion family the answer describes, "" when it names none
    # What the requested language model spent (DescribeResponse.usage; 0 attempts: none was called).
    llm_attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0  # wall time of those calls: GPU time for a local model
    cost: float | None = None  # money by the describer's price table; None when not priced
    # With the model's own track (T, 3): the describer was given its ``track_kept`` frames (bool
    # (T,), by confidence) instead of ``observed``, which stays the truth.
    track: np.ndarray | None = None
    track_kept: np.ndarray | None = None


@dataclass
class BranchReport:
    """Everything collected about one branch."""

    name: str
    trainer_target: str
    status: trainer_pb2.TrainingStatus | None = None
    history: list[trainer_pb2.EpochMetrics] | None = None
    results: trainer_pb2.EvaluationResults | None = None
    curves: Curves | None = None
    served: ServedEvaluation | None = None
    latency: Latency | None = None
    client_latency: Latency | None = None
    samples: list[SampleDescription] = field(default_factory=list)
    # The same clips described from the served model's own observed track ("pixels to equation").
    track_samples: list[SampleDescription] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    def add_missing(self, section: str, reason: str) -> None:
        self.missing.append(Missing(section, reason, self.name))

    @property
    def has_results(self) -> bool:
        return self.results is not None

    def meets_criteria(self) -> bool | None:
        """True/False from the trainer's results; None when there are none."""
        if self.results is None:
            return None
        return (
            self.results.accuracy > ACCURACY_CRITERION and self.results.forecast_mae_pct < MAE_PCT_CRITERION
        )

    def equation_accuracy(self) -> float | None:
        scored = [s for s in self.samples if s.scored and s.accurate is not None]
        if not scored:
            return None
        return sum(1 for s in scored if s.accurate) / len(scored)


@dataclass
class WinnerDecision:
    """The winner under an explicit rule, and the paragraph that justifies it."""

    rule: str  # rule id, e.g. "accuracy_then_mae"
    rule_text: str  # the rule in words
    winner: str  # "" when no branch is eligible
    ranking: list[str]  # eligible branches, best first
    justification: str
    excluded: dict[str, str] = field(default_factory=dict)  # branch -> why it could not compete


@dataclass
class ReportData:
    """The whole collected report, ready to render."""

    created_at: str  # RFC 3339 UTC
    branches: dict[str, BranchReport]
    class_names: tuple[str, ...]
    winner: WinnerDecision
    missing: list[Missing]  # report-wide missing sections (branch parts are in BranchReport.missing)
    sources: dict[str, str]  # source name -> target/URL or "not configured"
    validation: ValidationSet | None
    describer_backends: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # findings a reader should know
    stats: Any = None  # services.reporter.stats.StatsResult over the served runs; None without any
    stats_runs: list[str] = field(default_factory=list)  # runs the statistics used
    stats_left_out: dict[str, str] = field(default_factory=dict)  # run -> why it is not in them
    robustness: Any = None  # services.reporter.robustness.RobustnessResult; None: stress sets off

    def all_missing(self) -> list[Missing]:
        out = list(self.missing)
        for b in self.branches.values():
            out.extend(b.missing)
        return out


@dataclass(frozen=True)
class SummaryRow:
    """One branch's line in the summary table (mirrors reporter.proto SummaryRow)."""

    branch: str
    accuracy: float | None
    forecast_mae_pct: float | None
    meets_criteria: bool
    equation_accuracy: float | None
    served_accuracy: float | None
    missing_reason: str
    served_forecast_mae_pct: float | None = None
    evaluation_split: str = ""  # split of the served figures ("test" or "val")


@dataclass(frozen=True)
class ReportResult:
    """Where a report was written and what it concluded."""

    report_dir: Path
    markdown_path: Path
    html_path: Path
    json_path: Path
    figure_paths: list[Path]
    winner: str
    winner_rule: str  # the rule in words
    justification: str
    summary: list[SummaryRow]
    missing: list[Missing]
    verdict: str = ""  # statistical headline: "winner: b2" or "statistically tied for first: ..."
    verdict_reason: str = ""

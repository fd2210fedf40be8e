"""Robustness: the served models scored on the stress sets, and their drop from the test split.

One place for the scoring that ``trajlab stress`` and the reporter's robustness section share:

- :func:`load_stress_sets` builds (or reuses) the named stress sets of a dataset
  (:mod:`trajlab.data.stress`) and loads each one's clips as a :class:`ValidationSet`;
- :func:`score_served` sends every clip through the encoder's Analyze (``trajlab.clients.encoder``)
  and returns the per-clip outcome (correct or not, forecast MAE in % of the clip's extent);
- :func:`compare_to_test` gives each set's accuracy and MAE and its drop from the test split,
  with a 95 % bootstrap interval (``scipy.stats.bootstrap`` over clips): paired clip by clip
  when the stress clip shows the same trajectory as its test twin (same positions), as two
  independent samples otherwise.

The drop is "test minus set" for accuracy (positive: the set is harder) and "set minus test"
for MAE (positive: the set's forecasts are worse), in points.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from services.reporter.model import ValidationSet
from services.reporter.stats import Interval, RunOutcome

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the intervals are reproducible for the same outcomes
CONCURRENCY = 4  # Analyze calls in flight per scoring (the encoder batches up to 8 when a queue forms)


@dataclass(frozen=True)
class SetRow:
    """One branch on one stress set, against the same branch on the test split."""

    branch: str
    set_name: str
    clips: int
    accuracy: float  # fraction 0..1
    mae_pct: float  # % of extent
    accuracy_drop: Interval  # test minus set, fraction (points / 100); low/high: 95 % bootstrap
    mae_rise: Interval  # set minus test, % of extent
    paired: bool  # the drop was computed clip by clip against the same trajectories


@dataclass
class RobustnessResult:
    """The robustness table: per branch its test-split figures, per (branch, set) a row."""

    sets: dict[str, str]  # set name -> what it changes, in table order
    test: dict[str, tuple[int, float, float]]  # branch -> (clips, accuracy, MAE % of extent)
    rows: list[SetRow] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # "branch" or "branch/set" -> why not scored
    samples: int = 0  # clips per stress set

    def row(self, branch: str, set_name: str) -> SetRow | None:
        return next((r for r in self.rows if r.branch == branch and r.set_name == set_name), None)

    def to_dict(self) -> dict[str, Any]:
        def iv(i: Interval) -> dict[str, Any]:
            return {"value": i.mean, "low": i.low, "high": i.high, "method": i.method}

        return {
            "sets": dict(self.sets),
            "samples_per_set": self.samples,
            "test": {
                b: {"clips": n, "accuracy": a, "forecast_mae_pct": m} for b, (n, a, m) in self.test.items()
            },
            "rows": [
                {
                    "branch": r.branch,
                    "set": r.set_name,
                    "clips": r.clips,
                    "accuracy": r.accuracy,
                    "forecast_mae_pct": r.mae_pct,
                    "accuracy_drop": iv(r.accuracy_drop),
                    "mae_rise_pct": iv(r.mae_rise),
                    "paired": r.paired,
                }
                for r in self.rows
            ],
            "missing": dict(self.missing),
        }


# -- the clips ----------------------------------------------------------------------------------


def load_stress_sets(
    data_dir: str | Path, names: list[str], samples: int, *, dataset_cfg: Any = None,
    root: str | Path | None = None,
) -> dict[str, ValidationSet]:
    """Build (cached) and load the stress sets ``names`` of the dataset cached in ``data_dir``.

    ``dataset_cfg`` defaults to the config in that dataset's manifest; ``root`` is where the sets
    are cached (None: beside the dataset, trajlab.data.stress.stress_dir).
    """
    from services.reporter.sources.validation import load_validation
    from trajlab.data import read_manifest
    from trajlab.data.stress import build_stress_set, stress_dir
    from trajlab.profiles import DatasetConfig

    cfg = dataset_cfg or DatasetConfig.model_validate(read_manifest(data_dir)["config"])
    out: dict[str, ValidationSet] = {}
    for name in names:
        res = build_stress_set(cfg, name, data_dir, samples=samples, root=root)
        log.info("stress set %s: %s in %.2f s", name, "reused" if res.reused else "built", res.seconds)
        out[name] = load_validation(stress_dir(data_dir, name, root), "test")
    return out


# -- scoring ------------------------------------------------------------------------------------


def outcome(
    branch: str,
    clips: ValidationSet,
    indices: np.ndarray,
    predictions: np.ndarray,
    forecasts: np.ndarray,
) -> RunOutcome:
    """Per-clip correctness and forecast MAE (% of extent; metrics.compute_metrics' definition)."""
    idx = np.asarray(indices, dtype=np.int64)
    truth = clips.positions[idx, clips.frames :].astype(np.float64)
    fc = np.asarray(forecasts, dtype=np.float64)
    if fc.shape != truth.shape:
        raise ValueError(
            f"the served forecast has shape {fc.shape[1:]}, the clips' horizon {truth.shape[1:]}"
        )
    extent = np.maximum(clips.extent[idx].astype(np.float64), 1e-12)
    mae_pct = (np.abs(fc - truth) / extent[:, None, None]).mean(axis=(1, 2)) * 100.0
    correct = np.asarray(predictions) == clips.labels[idx]
    return RunOutcome(branch, 0, correct, mae_pct, idx)


def score_served(
    client: Any,
    branch: str,
    clips: ValidationSet,
    *,
    timeout: float | None = None,
    concurrency: int = CONCURRENCY,
) -> RunOutcome:
    """Every clip through the branch's served model (``EncoderClient.analyze``), scored clip by clip.

    ``concurrency`` calls are in flight at once (the encoder batches the queue they form); the
    answers are the same as one at a time. Raises grpc.RpcError on the first failed call (a
    partial set would be another sample).
    """
    from concurrent.futures import ThreadPoolExecutor

    names = {n: i for i, n in enumerate(clips.class_names)}

    def one(i: int) -> tuple[int, np.ndarray]:
        a = client.analyze(np.asarray(clips.clips[i]), branch=branch, fps=clips.fps, timeout=timeout)
        name = a.classification.class_name
        if name not in names:
            raise ValueError(f"the encoder answered an unknown class {name!r} for {branch}")
        return names[name], a.forecast.positions

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(pool.map(one, range(len(clips))))
    preds = np.array([p for p, _ in answers], dtype=np.int64)
    forecasts = np.stack([f for _, f in answers])
    return outcome(branch, clips, np.arange(len(clips)), preds, forecasts)


# -- the drop from the test split -----------------------------------------------------------------


def _diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def drop_interval(first: np.ndarray, second: np.ndarray, *, paired: bool) -> Interval:
    """mean(first) - mean(second) with its 95 % percentile bootstrap interval over clips.

    ``paired``: first[i] and second[i] are the same clip's two figures (resampled together).
    """
    x = np.asarray(first, dtype=np.float64)
    y = np.asarray(second, dtype=np.float64)
    point = float(x.mean() - y.mean())
    how = "paired" if paired else "independent"
    method = f"{how} percentile bootstrap over clips ({BOOTSTRAP_RESAMPLES} resamples)"
    if len(x) < 2 or len(y) < 2:
        return Interval(point, float("nan"), float("nan"), method + ": too few clips")
    res = sps.bootstrap(
        (x, y),
        _diff,
        paired=paired,
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    ci = res.confidence_interval
    return Interval(point, float(ci.low), float(ci.high), method)


def _twins(
    test_set: ValidationSet, test: RunOutcome, stress_set: ValidationSet
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``test`` and in the stress set of clips that show the same trajectory (or empty)."""
    n = min(len(stress_set), len(test_set))
    same = np.zeros(len(stress_set), dtype=bool)
    if test_set.positions.shape[1:] == stress_set.positions.shape[1:]:
        same[:n] = np.all(test_set.positions[:n] == stress_set.positions[:n], axis=(1, 2))
    where = {int(c): k for k, c in enumerate(test.clip_ids)}
    stress_pos = [j for j in range(len(stress_set)) if same[j] and j in where]
    return np.array([where[j] for j in stress_pos], dtype=np.int64), np.array(stress_pos, dtype=np.int64)


def compare_to_test(
    branch: str,
    set_name: str,
    test_set: ValidationSet,
    test: RunOutcome,
    stress_set: ValidationSet,
    got: RunOutcome,
) -> SetRow:
    """The stress set's figures and their drop from the test split's (paired when the clips are twins)."""
    t_idx, s_idx = _twins(test_set, test, stress_set)
    # Paired only when every stress clip has its test twin: otherwise the sets differ in trajectories.
    paired = len(s_idx) == len(got.correct) and len(s_idx) > 0
    if paired:
        order = np.argsort(got.clip_ids)
        s_correct, s_mae = got.correct[order][s_idx], got.mae_pct[order][s_idx]
        t_correct, t_mae = test.correct[t_idx], test.mae_pct[t_idx]
    else:
        s_correct, s_mae, t_correct, t_mae = got.correct, got.mae_pct, test.correct, test.mae_pct
    return SetRow(
        branch=branch,
        set_name=set_name,
        clips=len(got.correct),
        accuracy=float(np.mean(got.correct)),
        mae_pct=float(np.mean(got.mae_pct)),
        accuracy_drop=drop_interval(
            t_correct.astype(np.float64), s_correct.astype(np.float64), paired=paired
        ),
        mae_rise=drop_interval(s_mae, t_mae, paired=paired),
        paired=paired,
    )


def robustness(
    branches: list[str],
    test_set: ValidationSet,
    test_outcomes: dict[str, RunOutcome],
    stress_sets: dict[str, ValidationSet],
    score: Callable[[str, ValidationSet], RunOutcome],
    *,
    descriptions: dict[str, str] | None = None,
) -> RobustnessResult:
    """Score every branch on every stress set (``score(branch, clips)``) against its test outcome.

    A branch without a test outcome, or whose scoring fails, is listed in ``missing`` with why.
    """
    import grpc

    from services.reporter.sources.grpc_sources import rpc_reason
    from trajlab.data.stress import STRESS_SETS

    desc = descriptions or {n: STRESS_SETS[n].description if n in STRESS_SETS else n for n in stress_sets}
    result = RobustnessResult(
        sets={n: desc.get(n, n) for n in stress_sets},
        test={},
        samples=max((len(s) for s in stress_sets.values()), default=0),
    )
    for b in branches:
        t = test_outcomes.get(b)
        if t is None:
            result.missing[b] = "no served test-split evaluation"
            continue
        result.test[b] = (len(t.correct), float(np.mean(t.correct)), float(np.mean(t.mae_pct)))
        for name, clips in stress_sets.items():
            try:
                got = score(b, clips)
            except (grpc.RpcError, ValueError) as exc:
                reason = rpc_reason(exc) if isinstance(exc, grpc.RpcError) else str(exc)
                result.missing[f"{b}/{name}"] = f"scoring through the encoder failed: {reason}"
                continue
            result.rows.append(compare_to_test(b, name, test_set, t, clips, got))
    return result


# -- in the report ------------------------------------------------------------------------------


def report_robustness(
    settings: Any, reports: dict[str, Any], validation: ValidationSet | None
) -> tuple[RobustnessResult | None, str]:
    """The report's robustness result when ``settings.stress_sets`` is set; (None, why not) otherwise.

    The branches' test outcomes are their served evaluations already in ``reports``; the stress
    sets are built beside the evaluation dataset and scored through ``settings.encoder_target``.
    """
    from services.reporter.outcomes import run_outcome
    from services.reporter.storage import local_validation_dir
    from trajlab.clients.encoder import EncoderClient
    from trajlab.data.stress import parse_sets

    if not settings.stress_sets:
        return None, ""
    served = {b: r for b, r in reports.items() if r.served is not None}
    if validation is None or not served or not settings.encoder_target:
        return None, "no served model evaluated on the test split to compare the stress sets with"
    names = parse_sets(settings.stress_sets)
    try:
        sets = load_stress_sets(
            local_validation_dir(settings), names, settings.stress_samples, root=settings.stress_dir
        )
    except Exception as exc:  # a reason to show in the report, not a crash
        return None, f"could not build the stress sets: {type(exc).__name__}: {exc}"
    test = {b: run_outcome(r, validation) for b, r in served.items()}
    with EncoderClient(settings.encoder_target, timeout=settings.rpc_timeout_seconds) as enc:
        result = robustness(
            list(reports),
            validation,
            test,
            sets,
            lambda b, clips: score_served(enc, b, clips),
        )
    return result, ""

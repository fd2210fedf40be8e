"""The report's statistics (scipy.stats): intervals, paired tests, Holm, the winner or a named tie.

Pure functions of per-clip outcomes; no rendering here. Every branch's served model(s) answer
the same test clips, so comparisons are paired:

- per branch: mean and 95 % interval of accuracy and forecast MAE (% of extent) over seeds and
  clips. The clip is the unit: each clip's figure is averaged over the branch's seeds, then a
  t interval over clips (one seed and accuracy: the exact Clopper-Pearson interval instead);
- every pair of branches: McNemar's exact test on per-clip correctness (a binomial test on the
  discordant pairs; with several seeds, runs of the same seed index are paired clip by clip),
  and the Wilcoxon signed-rank test on per-clip forecast error (seed-averaged), with effect
  sizes (accuracy difference and discordant odds ratio; median error difference and the
  matched-pairs rank-biserial correlation);
- Holm's step-down correction over the pairs, per metric;
- the winner is declared only when it is significantly better (Holm-adjusted p < alpha, in
  its favour) than every other branch on the rule's metric; otherwise the branches that are
  not significantly worse than the leader are "statistically tied for first", with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Literal

import numpy as np
from scipy import stats as sps

Metric = Literal["accuracy", "mae"]
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8


@dataclass(frozen=True)
class RunOutcome:
    """One finished run (a branch at one training seed) scored clip by clip on the test split."""

    branch: str
    seed: int
    correct: np.ndarray  # bool (N,): predicted class is the true one
    mae_pct: np.ndarray  # float (N,): forecast MAE of the clip, % of its trajectory's extent
    clip_ids: np.ndarray  # int (N,): index of each clip in the test split (pairs the runs)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    method: str  # how the interval was computed, for the report


@dataclass(frozen=True)
class BranchStats:
    branch: str
    seeds: list[int]
    clips: int
    accuracy: Interval  # fraction 0..1
    mae_pct: Interval  # % of extent
    seed_accuracies: list[float]  # one per seed, in ``seeds`` order


@dataclass(frozen=True)
class PairTest:
    """One pair of branches compared on the same clips (``a`` before ``b`` in branch order)."""

    a: str
    b: str
    pairs: int  # (seed, clip) pairs in the McNemar test
    a_only: int  # pairs where a is right and b wrong
    b_only: int  # pairs where b is right and a wrong
    accuracy_diff: float  # accuracy of a minus b, fraction
    odds_ratio: float  # a_only / b_only (inf when b_only is 0, nan when both are)
    mcnemar_p: float
    mcnemar_p_holm: float
    clips: int  # clips in the Wilcoxon test
    mae_diff_median: float  # median over clips of (a's error - b's error), % of extent
    rank_biserial: float  # matched-pairs rank-biserial correlation of b's error - a's (> 0: a better)
    wilcoxon_p: float
    wilcoxon_p_holm: float

    def p_holm(self, metric: Metric) -> float:
        return self.mcnemar_p_holm if metric == "accuracy" else self.wilcoxon_p_holm

    def favours(self, metric: Metric) -> str:
        """The branch the pair's point estimate favours on ``metric`` ("" when equal)."""
        # rank_biserial > 0: a tends to have the lower forecast error.
        d = float(self.a_only - self.b_only) if metric == "accuracy" else self.rank_biserial
        if d > 0:
            return self.a
        return self.b if d < 0 else ""


@dataclass(frozen=True)
class Resolution:
    """What accuracy difference the test split can resolve."""

    clips: int
    accuracy: float  # the accuracy the figures are taken at
    ci_half_width: float  # half-width of one accuracy's 95 % Clopper-Pearson interval, fraction
    detectable_diff: float  # smallest difference found with ``power`` at ``alpha`` (two-sided), fraction
    alpha: float
    power: float
    paired: bool  # computed from the observed discordance (McNemar) rather than two independent samples


@dataclass(frozen=True)
class Verdict:
    metric: Metric
    alpha: float
    winner: str  # "" when tied or nothing to compare
    tied: list[str]  # the branches statistically tied for first (empty when there is a winner)
    reason: str  # the sentence the report prints

    @property
    def headline(self) -> str:
        if self.winner:
            return f"winner: {self.winner}"
        if self.tied:
            return "statistically tied for first: " + ", ".join(self.tied)
        return "no winner: nothing to compare"


@dataclass
class StatsResult:
    alpha: float
    metric: Metric
    branches: dict[str, BranchStats]
    pairs: list[PairTest]
    verdict: Verdict
    resolution: Resolution | None
    notes: list[str] = field(default_factory=list)


# -- textbook pieces -------------------------------------------------------------------------


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of the discordant pairs against 1/2."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    return float(sps.binomtest(a_only, n, 0.5, alternative="two-sided").pvalue)


def wilcoxon_paired(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank p-value of x - y (two-sided) and the rank-biserial correlation of y - x.

    Zero differences are dropped (Wilcoxon's convention). All differences zero: p = 1, r = 0.
    """
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0, 0.0
    p = float(sps.wilcoxon(d).pvalue)
    ranks = sps.rankdata(np.abs(d))
    w_pos, w_neg = ranks[d > 0].sum(), ranks[d < 0].sum()
    # > 0 when y - x tends to be positive, i.e. x has the smaller values.
    r = float((w_neg - w_pos) / (w_pos + w_neg))
    return p, r


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def proportion_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return Interval(successes / n, float(ci.low), float(ci.high), "Clopper-Pearson over clips")


def mean_interval(values: np.ndarray, confidence: float = 0.95, what: str = "clips") -> Interval:
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2 or float(v.std()) == 0.0:
        return Interval(m, m, m, f"t interval over {what} (no spread)")
    lo, hi = sps.t.interval(confidence, len(v) - 1, loc=m, scale=sps.sem(v))
    return Interval(m, float(lo), float(hi), f"t interval over {what}")


def resolvable_difference(
    clips: int,
    accuracy: float,
    *,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    discordance: float | None = None,
) -> Resolution:
    """The accuracy difference ``clips`` test clips resolve at ``alpha`` with ``power``.

    Normal approximation: paired (McNemar) with the observed discordant share ``discordance``
    when given, d = (z_{1-alpha/2} + z_power) * sqrt(discordance / n); else two independent
    accuracies near ``accuracy``, d = (z_{1-alpha/2} + z_power) * sqrt(2 p (1 - p) / n).
    """
    p = min(max(accuracy, 1.0 / clips), 1.0 - 1.0 / clips)
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power))
    paired = discordance is not None and discordance > 0
    var = discordance if paired else 2 * p * (1 - p)
    ci = proportion_interval(round(p * clips), clips)
    return Resolution(
        clips=clips,
        accuracy=accuracy,
        ci_half_width=(ci.high - ci.low) / 2,
        detectable_diff=z * math.sqrt(float(var) / clips),
        alpha=alpha,
        power=power,
        paired=paired,
    )


# -- the report's statistics ---------------------------------------------------------------------


def _aligned(runs: list[RunOutcome], clip_ids: np.ndarray) -> list[RunOutcome]:
    """The runs restricted to ``clip_ids``, in that order."""
    out = []
    for r in runs:
        pos = {int(c): i for i, c in enumerate(r.clip_ids)}
        idx = np.array([pos[int(c)] for c in clip_ids], dtype=np.int64)
        out.append(RunOutcome(r.branch, r.seed, r.correct[idx], r.mae_pct[idx], clip_ids))
    return out


def branch_stats(branch: str, runs: list[RunOutcome], confidence: float = 0.95) -> BranchStats:
    correct = np.stack([r.correct for r in runs]).astype(np.float64)  # (seeds, clips)
    mae = np.stack([r.mae_pct for r in runs]).astype(np.float64)
    n = correct.shape[1]
    if len(runs) == 1:
        acc = proportion_interval(int(correct.sum()), n, confidence)
    else:
        acc = mean_interval(correct.mean(axis=0), confidence, f"clips (each averaged over {len(runs)} seeds)")
    what = "clips" if len(runs) == 1 else f"clips (each averaged over {len(runs)} seeds)"
    return BranchStats(
        branch=branch,
        seeds=[r.seed for r in runs],
        clips=n,
        accuracy=acc,
        mae_pct=mean_interval(mae.mean(axis=0), confidence, what),
        seed_accuracies=[float(c.mean()) for c in correct],
    )


def _pair(a: list[RunOutcome], b: list[RunOutcome]) -> PairTest:
    # McNemar on (seed, clip) pairs: the k-th run of a against the k-th run of b (seed order).
    k = min(len(a), len(b))
    ca = np.concatenate([r.correct for r in a[:k]])
    cb = np.concatenate([r.correct for r in b[:k]])
    a_only = int(np.sum(ca & ~cb))
    b_only = int(np.sum(~ca & cb))
    odds = a_only / b_only if b_only else (math.inf if a_only else math.nan)
    ea = np.mean([r.mae_pct for r in a], axis=0)
    eb = np.mean([r.mae_pct for r in b], axis=0)
    w_p, r_b = wilcoxon_paired(ea, eb)
    return PairTest(
        a=a[0].branch,
        b=b[0].branch,
        pairs=len(ca),
        a_only=a_only,
        b_only=b_only,
        accuracy_diff=float(ca.mean() - cb.mean()),
        odds_ratio=odds,
        mcnemar_p=mcnemar_exact(a_only, b_only),
        mcnemar_p_holm=math.nan,
        clips=len(ea),
        mae_diff_median=float(np.median(ea - eb)),
        rank_biserial=r_b,
        wilcoxon_p=w_p,
        wilcoxon_p_holm=math.nan,
    )


def compare(
    runs: dict[str, list[RunOutcome]],
    *,
    metric: Metric = "accuracy",
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
) -> StatsResult:
    """Intervals per branch, paired tests per pair (Holm-corrected) and the verdict.

    ``runs`` maps each branch to its finished runs (one per seed); branches without a finished
    run are left out by the caller. Only clips every run answered are compared.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    runs = {b: sorted(rs, key=lambda r: r.seed) for b, rs in runs.items() if rs}
    notes: list[str] = []
    if not runs:
        verdict = Verdict(metric, alpha, "", [], "No branch has a finished run scored on the test clips.")
        return StatsResult(alpha, metric, {}, [], verdict, None, notes)
    common = None
    for rs in runs.values():
        for r in rs:
            ids = set(np.asarray(r.clip_ids).tolist())
            common = ids if common is None else common & ids
    clip_ids = np.array(sorted(common or ()), dtype=np.int64)
    if len(clip_ids) == 0:
        verdict = Verdict(metric, alpha, "", [], "The runs share no test clip, so nothing is compared.")
        return StatsResult(alpha, metric, {}, [], verdict, None, notes)
    total = max(len(r.clip_ids) for rs in runs.values() for r in rs)
    if len(clip_ids) < total:
        notes.append(f"Compared on the {len(clip_ids)} test clips every run answered (of {total}).")
    aligned = {b: _aligned(rs, clip_ids) for b, rs in runs.items()}
    per_branch = {b: branch_stats(b, rs) for b, rs in aligned.items()}
    pairs = [_pair(aligned[a], aligned[b]) for a, b in combinations(list(aligned), 2)]
    for adj_field, raw in (("mcnemar_p_holm", "mcnemar_p"), ("wilcoxon_p_holm", "wilcoxon_p")):
        adjusted = holm([getattr(p, raw) for p in pairs])
        pairs = [replace(p, **{adj_field: v}) for p, v in zip(pairs, adjusted, strict=True)]
    discordance = None
    if pairs:
        discordance = float(np.mean([(p.a_only + p.b_only) / p.pairs for p in pairs]))
    mean_acc = float(np.mean([s.accuracy.mean for s in per_branch.values()]))
    resolution = resolvable_difference(
        len(clip_ids), mean_acc, alpha=alpha, power=power, discordance=discordance
    )
    verdict = decide(per_branch, pairs, metric=metric, alpha=alpha)
    return StatsResult(alpha, metric, per_branch, pairs, verdict, resolution, notes)


def _leader(per_branch: dict[str, BranchStats], metric: Metric) -> str:
    if metric == "accuracy":
        return max(per_branch, key=lambda b: (per_branch[b].accuracy.mean, -per_branch[b].mae_pct.mean))
    return min(per_branch, key=lambda b: (per_branch[b].mae_pct.mean, -per_branch[b].accuracy.mean))


def decide(
    per_branch: dict[str, BranchStats], pairs: list[PairTest], *, metric: Metric, alpha: float
) -> Verdict:
    """Winner only when the leader beats every other branch significantly (Holm) on ``metric``."""
    test = "McNemar's exact test" if metric == "accuracy" else "the Wilcoxon signed-rank test"
    what = "accuracy" if metric == "accuracy" else "forecast MAE"
    if len(per_branch) == 1:
        only = next(iter(per_branch))
        why = f"{only} is the only branch with finished runs: nothing to compare it with."
        return Verdict(metric, alpha, "", [], why)
    lead = _leader(per_branch, metric)
    beaten: list[str] = []
    tied: list[tuple[str, float]] = []  # (branch, Holm-adjusted p against the leader)
    for p in pairs:
        if lead not in (p.a, p.b):
            continue
        other = p.b if p.a == lead else p.a
        ph = p.p_holm(metric)
        if ph < alpha and p.favours(metric) == lead:
            beaten.append(other)
        else:
            tied.append((other, ph))
    if not tied:
        return Verdict(
            metric,
            alpha,
            lead,
            [],
            f"{lead} has the best {what} and is significantly better than every other branch "
            f"({test}, Holm-adjusted p < {alpha:g} against {', '.join(beaten)}).",
        )
    names = [lead, *(o for o, _ in tied)]
    why = "; ".join(f"{lead} vs {o}: Holm-adjusted p = {ph:.3g}" for o, ph in tied)
    return Verdict(
        metric,
        alpha,
        "",
        names,
        f"{lead} has the best {what}, but it is not significantly better ({test}, alpha {alpha:g}) than "
        f"{', '.join(n for n in names[1:])} ({why}), so they are statistically tied for first.",
    )

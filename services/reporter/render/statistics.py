"""The report's "Statistics" section and headline, from services.reporter.stats (no computation here)."""

from __future__ import annotations

import math

from services.reporter.model import ACCURACY_CRITERION, MAE_PCT_CRITERION, ReportData
from services.reporter.render.blocks import MISSING, Para, Section, Table, pct, pct_value
from services.reporter.stats import Interval, Resolution, StatsResult
from trajlab.runs import split_ablation


def _split(data: ReportData) -> str:
    v = data.validation
    if v is None:
        return "evaluation"
    return {"test": "held-out test", "val": "validation"}.get(v.split, v.split)


def headline(data: ReportData) -> list[Para]:
    """The verdict paragraphs that open the summary."""
    st: StatsResult | None = data.stats
    if st is None:
        return [Para("**Verdict: none.** No clips to score the served models on, so no statistics.")]
    n = st.resolution.clips if st.resolution is not None else 0
    where = f" on the {n} {_split(data)} clips" if n else ""
    out = [Para(f"**Verdict{where}: {st.verdict.headline}.** {st.verdict.reason}")]
    if st.resolution is not None:
        out.append(Para(resolution_sentence(st.resolution)))
    return out


def resolution_sentence(r: Resolution) -> str:
    how = (
        "paired, from the observed share of clips on which two branches disagree"
        if r.paired
        else "two independent accuracies"
    )
    return (
        f"What the test split can resolve: with {r.clips} clips, one accuracy near {pct(r.accuracy)} is "
        "known "
        f"to within ±{r.ci_half_width * 100:.1f} points (95 % Clopper-Pearson), and a difference between two "
        f"branches of {r.detectable_diff * 100:.1f} points or more is found at {100 * (1 - r.alpha):.0f} % "
        f"confidence with {r.power * 100:.0f} % power ({how}); smaller differences may be ties."
    )


def _ci(iv: Interval, *, frac: bool) -> str:
    f = pct if frac else pct_value
    return f"{f(iv.mean)} [{f(iv.low)}, {f(iv.high)}]"


def _p(v: float) -> str:
    if not math.isfinite(v):
        return MISSING
    return f"{v:.2e}" if v < 1e-3 else f"{v:.3f}"


def _ratio(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.2f}"


def statistics_section(data: ReportData) -> Section:
    st: StatsResult | None = data.stats
    if st is None:
        none = Para("No statistics: no clips to score the served models on.")
        return Section("Statistics", "statistics", [none])
    blocks: list = [*headline(data), _branches_table(st)]
    if st.pairs:
        blocks.append(_pairs_table(st))
    ablation = _ablation_table(st)
    if ablation is not None:
        blocks.append(ablation)
    for n in st.notes:
        blocks.append(Para(n))
    return Section("Statistics", "statistics", blocks)


def _branches_table(st: StatsResult) -> Table:
    """Per branch, the mean and 95 % interval of accuracy and forecast MAE over its seeds' clips."""
    rows = []
    for b, s in st.branches.items():
        meets = s.accuracy.mean > ACCURACY_CRITERION and s.mae_pct.mean < MAE_PCT_CRITERION
        rows.append(
            [
                b,
                ", ".join(str(x) for x in s.seeds),
                str(s.clips),
                _ci(s.accuracy, frac=True),
                _ci(s.mae_pct, frac=False),
                ", ".join(pct(a) for a in s.seed_accuracies),
                "yes" if meets else "no",
            ]
        )
    return Table(
        [
            "branch",
            "seeds",
            "clips",
            "accuracy [95 % CI]",
            "forecast MAE % extent [95 % CI]",
            "accuracy per seed",
            "meets criteria",
        ],
        rows,
        caption="The served models on the same clips. "
        + "; ".join(sorted({s.accuracy.method for s in st.branches.values()}))
        + " (accuracy); "
        + "; ".join(sorted({s.mae_pct.method for s in st.branches.values()}))
        + " (forecast MAE).",
    )


def _pairs_table(st: StatsResult) -> Table:
    """Every pair of branches: the paired tests, their effect sizes and Holm-adjusted p-values."""
    prow = [
        [
            f"{p.a} vs {p.b}",
            f"{p.accuracy_diff * 100:+.2f}",
            f"{p.a_only} / {p.b_only}",
            _ratio(p.odds_ratio),
            _p(p.mcnemar_p),
            _p(p.mcnemar_p_holm),
            f"{p.mae_diff_median:+.2f}",
            f"{p.rank_biserial:+.2f}",
            _p(p.wilcoxon_p),
            _p(p.wilcoxon_p_holm),
        ]
        for p in st.pairs
    ]
    return Table(
        [
            "pair (a vs b)",
            "accuracy a - b (points)",
            "only a right / only b right",
            "odds ratio",
            "McNemar p",
            "McNemar p (Holm)",
            "median MAE a - b (points)",
            "rank-biserial r",
            "Wilcoxon p",
            "Wilcoxon p (Holm)",
        ],
        prow,
        caption=f"Every pair on the same clips: McNemar's exact test on per-clip correctness "
        f"(seed k of a against seed k of b), the Wilcoxon signed-rank test on per-clip forecast MAE "
        f"(averaged over seeds); Holm-corrected over the {len(st.pairs)} pairs per test; "
        f"alpha {st.alpha:g} on {'accuracy' if st.metric == 'accuracy' else 'forecast MAE'} "
        "(the winner rule's first figure). r > 0: a has the lower forecast error.",
    )


def _ablation_table(st: StatsResult) -> Table | None:
    """Each branch beside its ablated self (``b1`` vs ``b1-noperc``), with the paired tests between them."""
    rows = []
    for p in st.pairs:
        for full, ablated in ((p.a, p.b), (p.b, p.a)):
            base, what = split_ablation(ablated)
            if not what or base != full:
                continue
            f, a = st.branches[full], st.branches[ablated]
            rows.append(
                [
                    full,
                    what,
                    f"{pct(f.accuracy.mean)} / {pct(a.accuracy.mean)}",
                    f"{(f.accuracy.mean - a.accuracy.mean) * 100:+.2f}",
                    _p(p.mcnemar_p_holm),
                    f"{pct_value(f.mae_pct.mean)} / {pct_value(a.mae_pct.mean)}",
                    _p(p.wilcoxon_p_holm),
                ]
            )
    if not rows:
        return None
    return Table(
        [
            "branch",
            "turned off",
            "accuracy with / without",
            "difference (points)",
            "McNemar p (Holm)",
            "forecast MAE with / without",
            "Wilcoxon p (Holm)",
        ],
        rows,
        caption="Ablation: each branch trained again with the part turned off (same seeds, same clips); "
        "what the branch's score owes to it, with the paired tests of the pair table.",
    )

"""services.reporter.stats against textbook cases, and the winner-or-tie rule on constructed runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.reporter.stats import (
    RunOutcome,
    compare,
    holm,
    mcnemar_exact,
    proportion_interval,
    resolvable_difference,
    wilcoxon_paired,
)


def test_mcnemar_exact_matches_the_binomial_tail_by_hand() -> None:
    # 1 vs 9 discordant pairs: p = 2 * P(X <= 1 | n = 10, 1/2) = 2 * 11 / 1024.
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair: no evidence either way


def test_mcnemar_textbook_example() -> None:
    # Agresti (2007), presidential approval: discordant cells 150 and 86, exact p ~ 3.8e-5.
    assert mcnemar_exact(150, 86) == pytest.approx(3.8e-5, rel=0.1)


def test_wilcoxon_signed_rank_textbook_example() -> None:
    # Siegel's height differences of cross- and self-fertilised plants (also scipy's docs example):
    # W = 24 on 15 pairs, exact two-sided p = 0.041259765625.
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    p, r = wilcoxon_paired(d, np.zeros_like(d))
    assert p == pytest.approx(0.041259765625)
    # Rank-biserial: (W- - W+) / total = (24 - 96) / 120 with x = d, y = 0 (x has the larger values).
    assert r == pytest.approx((24 - 96) / 120)
    assert wilcoxon_paired(d, d) == (1.0, 0.0)


def test_holm_step_down() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x with the running maximum.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.01, 0.9]) == pytest.approx([0.02, 0.9])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone: never below an earlier step


def test_intervals_and_resolution() -> None:
    ci = proportion_interval(8, 10)
    assert (ci.low, ci.high) == pytest.approx((0.4439, 0.9748), abs=1e-4)  # Clopper-Pearson, 8/10
    res = resolvable_difference(480, 0.8)
    # (1.96 + 0.8416) * sqrt(2 * 0.8 * 0.2 / 480) = 0.0723
    assert res.detectable_diff == pytest.approx(0.0723, abs=5e-4) and not res.paired
    paired = resolvable_difference(480, 0.8, discordance=0.1)
    assert paired.paired and paired.detectable_diff == pytest.approx(2.8016 * math.sqrt(0.1 / 480), rel=1e-3)


def _run(branch: str, correct: list[bool] | np.ndarray, mae: np.ndarray | None = None, seed: int = 0) -> RunOutcome:
    c = np.asarray(correct, dtype=bool)
    m = np.full(len(c), 10.0) if mae is None else mae
    return RunOutcome(branch, seed, c, m, np.arange(len(c)))


def test_clear_winner_is_declared_only_when_better_than_every_branch() -> None:
    n = 200
    rng = np.random.default_rng(0)
    strong = rng.random(n) < 0.95
    weak = rng.random(n) < 0.6
    weak2 = rng.random(n) < 0.55
    res = compare({"b1": [_run("b1", weak)], "b2": [_run("b2", strong)], "b3": [_run("b3", weak2)]})
    assert res.verdict.winner == "b2" and res.verdict.headline == "winner: b2"
    assert len(res.pairs) == 3 and all(p.mcnemar_p_holm >= p.mcnemar_p for p in res.pairs)
    assert res.branches["b2"].accuracy.low < strong.mean() < res.branches["b2"].accuracy.high


def test_close_branches_are_a_named_tie_with_the_reason() -> None:
    n = 100
    base = np.arange(n) % 10 != 0  # 90 %
    near = base.copy()
    near[:2] = True  # 92 %: two more clips right
    far = np.arange(n) % 2 == 0  # 50 %
    res = compare({"b1": [_run("b1", base)], "b2": [_run("b2", near)], "b3": [_run("b3", far)]})
    v = res.verdict
    assert v.winner == "" and v.tied == ["b2", "b1"]
    assert v.headline == "statistically tied for first: b2, b1"
    assert "b2 vs b1: Holm-adjusted p" in v.reason and "b3" not in v.reason


def test_forecast_metric_uses_wilcoxon_and_seeds_are_averaged() -> None:
    n = 60
    rng = np.random.default_rng(1)
    good = [_run("b1", np.ones(n, bool), rng.uniform(1, 2, n), seed=s) for s in (1, 2)]
    bad = [_run("b2", np.ones(n, bool), rng.uniform(5, 9, n), seed=s) for s in (1, 2)]
    res = compare({"b1": good, "b2": bad}, metric="mae")
    assert res.verdict.winner == "b1"
    assert res.branches["b1"].seeds == [1, 2] and "averaged over 2 seeds" in res.branches["b1"].mae_pct.method
    pair = res.pairs[0]
    assert pair.rank_biserial == pytest.approx(1.0) and pair.wilcoxon_p < 1e-6
    assert pair.pairs == 2 * n  # McNemar pairs (seed, clip)


def test_a_stricter_alpha_turns_a_win_into_a_tie() -> None:
    n = 100
    a = np.arange(n) % 10 != 0  # 90 %
    b = a.copy()
    b[np.flatnonzero(a)[:12]] = False  # 78 %: 12 discordant, all for a -> p = 2 / 4096
    assert compare({"a": [_run("a", a)], "b": [_run("b", b)]}).verdict.winner == "a"
    tied = compare({"a": [_run("a", a)], "b": [_run("b", b)]}, alpha=1e-4).verdict
    assert tied.winner == "" and tied.tied == ["a", "b"]
    with pytest.raises(ValueError, match="alpha"):
        compare({"a": [_run("a", a)]}, alpha=0)


def test_single_branch_and_no_runs() -> None:
    one = compare({"b1": [_run("b1", [True, False])]})
    assert one.verdict.winner == "" and one.verdict.tied == [] and "only branch" in one.verdict.reason
    assert one.verdict.headline == "no winner: nothing to compare"  # not "tied for first: b1"
    none = compare({})
    assert none.verdict.headline == "no winner: nothing to compare" and none.resolution is None

"""The winner rule: an explicit, configurable ordering, and a justification written from the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.reporter.model import (
    ACCURACY_CRITERION,
    MAE_PCT_CRITERION,
    BranchReport,
    WinnerDecision,
)

# Two figures closer than this are a tie (accuracies are k/N fractions, so real ties are exact).
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Rule:
    """A lexicographic ordering of branches by two figures."""

    rule_id: str
    text: str
    # (key, higher_is_better, label, is_percent_fraction) for the primary and tie-break figures.
    primary: tuple[str, bool, str]
    tiebreak: tuple[str, bool, str]


RULES: dict[str, Rule] = {
    "accuracy_then_mae": Rule(
        "accuracy_then_mae",
        "highest validation accuracy (trainer's evaluation); ties broken by lower forecast MAE (% of extent)",
        ("accuracy", True, "validation accuracy"),
        ("mae_pct", False, "forecast MAE"),
    ),
    "mae_then_accuracy": Rule(
        "mae_then_accuracy",
        "lowest forecast MAE (% of extent, trainer's evaluation); ties broken by higher validation accuracy",
        ("mae_pct", False, "forecast MAE"),
        ("accuracy", True, "validation accuracy"),
    ),
    "served_accuracy_then_mae": Rule(
        "served_accuracy_then_mae",
        "highest accuracy of the served ONNX model through the encoder; ties broken by lower served "
        "forecast MAE (% of extent)",
        ("served_accuracy", True, "served accuracy"),
        ("served_mae_pct", False, "served forecast MAE"),
    ),
}


def _figure(b: BranchReport, key: str) -> float | None:
    if key in ("accuracy", "mae_pct"):
        if b.results is None:
            return None
        return b.results.accuracy if key == "accuracy" else b.results.forecast_mae_pct
    if b.served is None:
        return None
    m = b.served.metrics
    return m.accuracy if key == "served_accuracy" else m.forecast_mae_pct


def _fmt(key: str, v: float) -> str:
    return f"{v * 100:.2f} %" if "accuracy" in key else f"{v:.2f} % of extent"


def _points(key: str, d: float) -> str:
    # Differences of percentages are percentage points.
    return f"{abs(d) * 100:.2f} points" if "accuracy" in key else f"{abs(d):.2f} points"


def decide(branches: list[BranchReport], rule_id: str, *, tied: list[str] | None = None) -> WinnerDecision:
    """Rank the branches that have the rule's figures and explain the result.

    ``tied``: the branches the statistics found tied for first (the verdict). When there are
    two or more, the rule's leader is said to lead, not to win: no winner is declared.
    """
    rule = RULES.get(rule_id)
    if rule is None:
        raise ValueError(f"unknown winner rule {rule_id!r}; known: {', '.join(RULES)}")
    pk, p_high, p_label = rule.primary
    tk, t_high, _t_label = rule.tiebreak
    eligible: list[tuple[BranchReport, float, float]] = []
    excluded: dict[str, str] = {}
    for b in branches:
        p, t = _figure(b, pk), _figure(b, tk)
        if p is None or t is None or not (math.isfinite(p) and math.isfinite(t)):
            reasons = [m.reason for m in b.missing if m.section in ("trainer", "results", "served model")]
            excluded[b.name] = reasons[0] if reasons else f"no {p_label} figure"
            continue
        eligible.append((b, p, t))

    sign_p = -1.0 if p_high else 1.0
    sign_t = -1.0 if t_high else 1.0

    def sort_key(item: tuple[BranchReport, float, float]) -> tuple[float, float, str]:
        # Round away float noise so equal k/N fractions compare equal, then order by the tie-break.
        return (sign_p * round(item[1], 9), sign_t * round(item[2], 9), item[0].name)

    eligible.sort(key=sort_key)
    ranking = [b.name for b, _, _ in eligible]
    if not eligible:
        text = "No branch has the figures the rule needs, so no winner is declared."
        if excluded:
            text += " " + " ".join(f"{n}: {r}." for n, r in excluded.items())
        return WinnerDecision(rule_id, rule.text, "", [], text, excluded)

    text = _justify(eligible, rule, excluded, tied=tied or [])
    return WinnerDecision(rule_id, rule.text, ranking[0], ranking, text, excluded)


def _justify(
    ranked: list[tuple[BranchReport, float, float]], rule: Rule, excluded: dict[str, str], *, tied: list[str]
) -> str:
    pk, _, p_label = rule.primary
    tk, _, t_label = rule.tiebreak
    win, wp, wt = ranked[0]
    wins, winning = ("leads", "Leading") if len(tied) > 1 else ("wins", "Winning")
    parts: list[str] = []
    if len(ranked) == 1:
        parts.append(
            f"{win.name} {wins} because it is the only branch with a {p_label} figure "
            f"({_fmt(pk, wp)}; {t_label} {_fmt(tk, wt)})."
        )
    else:
        ru, rp, rt = ranked[1]
        if abs(wp - rp) <= TIE_TOLERANCE:
            level = [b.name for b, p, _ in ranked if abs(p - wp) <= TIE_TOLERANCE]
            parts.append(
                f"{_join(level)} tie on {p_label} at {_fmt(pk, wp)}; the tie is broken by {t_label}, "
                f"where {win.name} has {_fmt(tk, wt)} against {ru.name}'s {_fmt(tk, rt)} "
                f"({_points(tk, wt - rt)} better), so {win.name} {wins}."
            )
        else:
            parts.append(
                f"{win.name} {wins} with a {p_label} of {_fmt(pk, wp)}, {_points(pk, wp - rp)} ahead of the "
                f"runner-up {ru.name} ({_fmt(pk, rp)})."
            )
            parts.append(_margin_note(win, ru, pk, wp, rp))
    if len(tied) > 1:
        parts.append(
            f"No winner is declared: the paired tests find {_join(tied)} statistically tied for first "
            "(the verdict)."
        )
    crit = win.meets_criteria()
    if crit is True:
        parts.append(
            f"{win.name} meets both success criteria (accuracy above {ACCURACY_CRITERION * 100:.0f} % "
            f"and forecast MAE below {MAE_PCT_CRITERION:.0f} % of extent)."
        )
    elif crit is False and win.results is not None:
        fails = []
        if not win.results.accuracy > ACCURACY_CRITERION:
            fails.append(
                f"accuracy {win.results.accuracy * 100:.2f} % is not above {ACCURACY_CRITERION * 100:.0f} %"
            )
        if not win.results.forecast_mae_pct < MAE_PCT_CRITERION:
            fails.append(
                f"forecast MAE {win.results.forecast_mae_pct:.2f} % is not below {MAE_PCT_CRITERION:.0f} %"
            )
        parts.append(
            f"{winning} is relative: {win.name} does not meet the success criteria ({'; '.join(fails)})."
        )
    if win.served is not None and win.results is not None:
        sm = win.served.metrics
        d = sm.accuracy - win.results.accuracy
        if abs(d) <= TIE_TOLERANCE:
            parts.append(
                f"Through the encoder, the served model of {win.name} scores the same "
                f"{sm.accuracy * 100:.2f} % "
                f"on {sm.samples} clips as the trainer's evaluation."
            )
        else:
            parts.append(
                f"Through the encoder, the served model of {win.name} scores {sm.accuracy * 100:.2f} % on "
                f"{sm.samples} clips, {abs(d) * 100:.2f} points {'above' if d > 0 else 'below'} the "
                "trainer's figure."
            )
    if excluded:
        parts.append("Not ranked: " + "; ".join(f"{n} ({r})" for n, r in excluded.items()) + ".")
    return " ".join(p for p in parts if p)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _margin_note(win: BranchReport, ru: BranchReport, key: str, wp: float, rp: float) -> str:
    """Put an accuracy margin next to its sampling noise, so a one-clip lead is not oversold."""
    if "accuracy" not in key:
        return ""
    n = _samples(win, key)
    if not n:
        return ""
    # Standard error of the difference of two accuracies on the same n clips (independence assumed).
    se = math.sqrt(max(wp * (1 - wp), 1e-12) / n + max(rp * (1 - rp), 1e-12) / n)
    clips = round(abs(wp - rp) * n)
    lead = f"The lead is {clips} clip{'s' if clips != 1 else ''} out of {n}"
    if abs(wp - rp) < 2 * se:
        return f"{lead}, within two standard errors ({2 * se * 100:.1f} points): the ranking is not decisive."
    return f"{lead}, more than two standard errors ({2 * se * 100:.1f} points)."


def _samples(b: BranchReport, key: str) -> int:
    if key == "served_accuracy":
        return b.served.metrics.samples if b.served else 0
    return int(b.results.samples) if b.results is not None else 0

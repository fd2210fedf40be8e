"""The report's "Equations from the describer" section: per backend and per branch, the sample
clips' equations and descriptions scored against the true positions."""

from __future__ import annotations

from collections import defaultdict

from services.reporter.model import BranchReport, ReportData, SampleDescription
from services.reporter.render.blocks import MISSING, Block, Bullets, Figure, Para, Section, Table, pct, yes_no
from services.reporter.render.figures import FigureRef

INTRO = (
    "Sample trajectories (the same validation clips for every branch, one class after "
    "another) sent to "
    "the describer with the observed positions, the encoder's forecast and predicted class; "
    "the returned "
    "equations are scored against the true positions (accurate when the RMSE is at most 5 % of the "
    "trajectory's extent). Answers a fallback produced are counted as such, never as the "
    "requested backend."
)


def _by_backend(data: ReportData) -> dict[str, list[SampleDescription]]:
    """Every sample by the backend it asked for (no answer: named by its run)."""
    by_backend: dict[str, list[SampleDescription]] = defaultdict(list)
    for b in data.branches.values():
        for s in b.samples:
            by_backend[s.backend_requested or (f"(no answer: {b.name})" if s.error else "(unknown)")].append(
                s
            )
    return by_backend


def _backend_row(name: str, ss: list[SampleDescription]) -> list[str]:
    answered = [s for s in ss if not s.error]
    scored = [s for s in answered if s.scored and s.accurate is not None]
    fallbacks = [s for s in answered if s.fallback_used]
    used = sorted({s.backend_used for s in answered if s.backend_used})
    reasons = sorted({s.fallback_reason for s in fallbacks if s.fallback_reason})
    acc = sum(1 for s in scored if s.accurate) / len(scored) if scored else None
    direct = [s for s in scored if not s.fallback_used]
    direct_acc = sum(1 for s in direct if s.accurate) / len(direct) if direct else None
    return [
        name,
        str(len(ss)),
        str(len(answered)),
        ", ".join(used) or MISSING,
        f"{len(fallbacks)} of {len(answered)}",
        pct(acc),
        pct(direct_acc) if direct else "n/a (all fell back)" if answered else MISSING,
        "; ".join(reasons),
    ]


def _backends_table(by_backend: dict[str, list[SampleDescription]]) -> Table:
    return Table(
        [
            "backend requested",
            "requests",
            "answers",
            "answered by",
            "from a fallback",
            "equation accuracy (all answers)",
            "equation accuracy (requested backend)",
            "fallback reasons",
        ],
        [_backend_row(name, ss) for name, ss in by_backend.items()],
        caption="Equation accuracy per describer backend.",
    )


def _describer_table(backends: list[dict]) -> Table:
    rows = [
        [
            d.get("name", ""),
            d.get("kind", ""),
            d.get("model", ""),
            str(d.get("health", "")).replace("BACKEND_HEALTH_", "").lower(),
            d.get("detail", ""),
        ]
        for d in backends
    ]
    return Table(
        ["backend", "kind", "model", "health", "detail"],
        rows,
        caption="Describer backends as the describer saw them when the report was built.",
    )


def _sample_row(s: SampleDescription) -> list[str]:
    if s.error:
        return [
            str(s.index),
            s.true_class,
            s.predicted_class or MISSING,
            MISSING,
            "",
            MISSING,
            MISSING,
            f"describer failed: {s.error}",
        ]
    eq = "; ".join(f"{a}(t) = {e}" for a, e in zip("xyz", s.equations, strict=True))
    used = s.backend_used + (f" ({s.model})" if s.model else "")
    # The reason is in the per-backend table; repeating it on every row buries the equations.
    fb = "yes" if s.fallback_used else "no"
    nr = pct(s.normalized_rmse) if s.normalized_rmse is not None else (s.score_error or MISSING)
    return [
        str(s.index),
        s.true_class,
        s.predicted_class or MISSING,
        used,
        fb,
        f"`{eq}`",
        nr,
        yes_no(s.accurate) if s.scored else (s.score_error or "not scored"),
    ]


def _branch_blocks(b: BranchReport, figs: dict[str, FigureRef]) -> list[Block]:
    """One run's samples: their table, the describer's descriptions, the trajectories figure."""
    blocks: list[Block] = [
        Table(
            [
                "clip",
                "true class",
                "predicted",
                "backend used",
                "fallback",
                "equations",
                "RMSE (% extent)",
                "accurate",
            ],
            [_sample_row(s) for s in b.samples],
            caption=f"{b.name}: sample trajectories.",
        )
    ]
    descs = [
        f"clip {s.index} ({s.backend_used or 'no answer'}): {s.description}"
        for s in b.samples
        if s.description
    ]
    if descs:
        blocks.append(Bullets(descs))
    if f"trajectories_{b.name}" in figs:
        blocks.append(Figure(figs[f"trajectories_{b.name}"]))
    return blocks


def described_section(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    blocks: list[Block] = [Para(INTRO)]
    by_backend = _by_backend(data)
    if by_backend:
        blocks.append(_backends_table(by_backend))
    if data.describer_backends:
        blocks.append(_describer_table(data.describer_backends))
    for b in data.branches.values():
        if b.samples:
            blocks.extend(_branch_blocks(b, figs))
    if not by_backend:
        reason = next((m.reason for m in data.missing if m.section == "equations"), "no samples requested")
        blocks.append(Para(f"Equations: {MISSING} ({reason})."))
    return Section("Equations from the describer", "equations", blocks)

"""The report's "Equations from the describer" section: per backend and per branch, the sample
clips' equations and descriptions scored against the true positions."""

from __future__ import annotations

from collections import defaultdict

from services.reporter.model import ReportData
from services.reporter.render.blocks import MISSING, Block, Bullets, Figure, Para, Section, Table, pct, yes_no
from services.reporter.render.figures import FigureRef


def described_section(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    blocks: list[Block] = [
        Para(
            "Sample trajectories (the same validation clips for every branch, one class after "
            "another) sent to "
            "the describer with the observed positions, the encoder's forecast and predicted class; "
            "the returned "
            "equations are scored against the true positions (accurate when the RMSE is at most 5 % of the "
            "trajectory's extent). Answers a fallback produced are counted as such, never as the "
            "requested backend."
        )
    ]
    by_backend: dict[str, list] = defaultdict(list)
    for b in data.branches.values():
        for s in b.samples:
            by_backend[s.backend_requested or (f"(no answer: {b.name})" if s.error else "(unknown)")].append(
                s
            )
    if by_backend:
        rows = []
        for name, ss in by_backend.items():
            answered = [s for s in ss if not s.error]
            scored = [s for s in answered if s.scored and s.accurate is not None]
            fallbacks = [s for s in answered if s.fallback_used]
            used = sorted({s.backend_used for s in answered if s.backend_used})
            reasons = sorted({s.fallback_reason for s in fallbacks if s.fallback_reason})
            acc = sum(1 for s in scored if s.accurate) / len(scored) if scored else None
            direct = [s for s in scored if not s.fallback_used]
            direct_acc = sum(1 for s in direct if s.accurate) / len(direct) if direct else None
            rows.append(
                [
                    name,
                    str(len(ss)),
                    str(len(answered)),
                    ", ".join(used) or MISSING,
                    f"{len(fallbacks)} of {len(answered)}",
                    pct(acc),
                    pct(direct_acc) if direct else "n/a (all fell back)" if answered else MISSING,
                    "; ".join(reasons),
                ]
            )
        blocks.append(
            Table(
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
                rows,
                caption="Equation accuracy per describer backend.",
            )
        )
    if data.describer_backends:
        rows = [
            [
                d.get("name", ""),
                d.get("kind", ""),
                d.get("model", ""),
                str(d.get("health", "")).replace("BACKEND_HEALTH_", "").lower(),
                d.get("detail", ""),
            ]
            for d in data.describer_backends
        ]
        blocks.append(
            Table(
                ["backend", "kind", "model", "health", "detail"],
                rows,
                caption="Describer backends as the describer saw them when the report was built.",
            )
        )
    for b in data.branches.values():
        if not b.samples:
            continue
        rows = []
        for s in b.samples:
            if s.error:
                rows.append(
                    [
                        str(s.index),
                        s.true_class,
                        s.predicted_class or MISSING,
                        MISSING,
                        "",
                        MISSING,
                        MISSING,
                        f"describer failed: {s.error}",
                    ]
                )
                continue
            eq = "; ".join(f"{a}(t) = {e}" for a, e in zip("xyz", s.equations, strict=True))
            used = s.backend_used + (f" ({s.model})" if s.model else "")
            # The reason is in the per-backend table; repeating it on every row buries the equations.
            fb = "yes" if s.fallback_used else "no"
            nr = pct(s.normalized_rmse) if s.normalized_rmse is not None else (s.score_error or MISSING)
            rows.append(
                [
                    str(s.index),
                    s.true_class,
                    s.predicted_class or MISSING,
                    used,
                    fb,
                    f"`{eq}`",
                    nr,
                    yes_no(s.accurate) if s.scored else (s.score_error or "not scored"),
                ]
            )
        blocks.append(
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
                rows,
                caption=f"{b.name}: sample trajectories.",
            )
        )
        descs = [
            f"clip {s.index} ({s.backend_used or 'no answer'}): {s.description}"
            for s in b.samples
            if s.description
        ]
        if descs:
            blocks.append(Bullets(descs))
        if f"trajectories_{b.name}" in figs:
            blocks.append(Figure(figs[f"trajectories_{b.name}"]))
    if not by_backend:
        reason = next((m.reason for m in data.missing if m.section == "equations"), "no samples requested")
        blocks.append(Para(f"Equations: {MISSING} ({reason})."))
    return Section("Equations from the describer", "equations", blocks)

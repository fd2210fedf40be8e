"""The report as a renderer-neutral document: the sections in order (the older ones here, the
newer ones each in its own module) built from the blocks of ``blocks.py``.

Markdown and HTML are both rendered from this one document, so they say the same
thing. A figure that is missing is written as "missing" (its reason is in the
"Missing" section and, for a branch, in the summary), never as a number.
"""

from __future__ import annotations

from services.reporter.model import (
    ACCURACY_CRITERION,
    MAE_PCT_CRITERION,
    BranchReport,
    ReportData,
)
from services.reporter.render.baselines import baselines_section, track_classifier_accuracy, track_error
from services.reporter.render.blocks import (
    MISSING,
    Block,
    Bullets,
    Document,
    Figure,
    Para,
    Section,
    Table,
    num,
    pct,
    pct_value,
    yes_no,
)
from services.reporter.render.cost import cost_section
from services.reporter.render.described import described_section
from services.reporter.render.equations import equations_section
from services.reporter.render.figures import FigureRef
from services.reporter.render.llm_cost import llm_cost_section
from services.reporter.render.robustness import robustness_section
from services.reporter.render.served import served_section
from services.reporter.render.statistics import statistics_section
from services.reporter.sources.grpc_sources import STATE_NAMES

# --- sections --------------------------------------------------------------------------------------


def build_document(data: ReportData, figures: list[FigureRef]) -> Document:
    figs = {f.key: f for f in figures}
    sections = [
        _summary(data, figs),
        statistics_section(data),
        _criteria(data),
        _classification(data, figs),
        _forecast(data, figs),
        baselines_section(data),
        _per_class(data, figs),
        _curves(data, figs),
        served_section(data),
        cost_section(data, figs),
        described_section(data, figs),
        llm_cost_section(data),
        equations_section(data),
        _notes(data),
        _missing(data),
        _method(data),
    ]

    robust = robustness_section(data, figs)
    if robust is not None:  # after the statistics: the stress sets are the next question
        sections.insert(2, robust)
    return Document("trajlab: parallel results comparison", sections)


def _branch_cfg(b: BranchReport) -> tuple[str, str, str]:
    if b.results is not None and b.results.branch.name:
        br = b.results.branch
        return br.encoder, br.enhancement, br.describer_backend
    if b.status is not None and b.status.branch.name:
        br = b.status.branch
        return br.encoder, br.enhancement, br.describer_backend
    return MISSING, MISSING, MISSING


def _state(b: BranchReport) -> str:
    if b.status is None:
        return "unreachable" if any(m.section == "trainer" for m in b.missing) else MISSING
    s = STATE_NAMES.get(b.status.state, str(b.status.state))
    return f"{s} ({b.status.epoch}/{b.status.total_epochs})"


def _summary(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    from services.reporter.render.statistics import headline

    w = data.winner
    profile = next((b.results.profile for b in data.branches.values() if b.results is not None), "")
    v = data.validation
    blocks: list[Block] = [
        Para(
            f"Built {data.created_at} from {len(data.branches)} run(s)"
            + (f", profile `{profile}`" if profile else "")
            + (f", served models scored on {len(v)} {v.split} clips" if v is not None else "")
            + "."
        ),
        *headline(data),
        Para(f"**Leader by the rule: {w.winner or 'none'}.** Rule: {w.rule_text} (`{w.rule}`)."),
        Para(w.justification),
        Para(_criteria_sentence(data)),
    ]
    rows = []
    for b in data.branches.values():
        enc, enh, backend = _branch_cfg(b)
        r = b.results
        reasons = "; ".join(m.reason for m in b.missing if m.section in ("trainer", "results"))
        rows.append(
            [
                f"**{b.name}**" if b.name == w.winner else b.name,
                enc,
                enh,
                backend,
                _state(b),
                pct(r.accuracy) if r is not None else MISSING,
                pct(b.served.metrics.accuracy) if b.served is not None else MISSING,
                pct_value(r.forecast_mae_pct) if r is not None else MISSING,
                pct_value(b.served.metrics.forecast_mae_pct) if b.served is not None else MISSING,
                yes_no(b.meets_criteria()),
                pct(b.equation_accuracy()),
                reasons or "",
            ]
        )
    split = v.split if v is not None else "served"
    blocks.append(
        Table(
            [
                "branch",
                "video encoder",
                "enhancement",
                "describer",
                "state (epoch)",
                "val accuracy",
                f"{split} accuracy (served)",
                "forecast MAE (% extent)",
                f"{split} forecast MAE (served)",
                "meets criteria (val)",
                "equation accuracy",
                "missing because",
            ],
            rows,
        )
    )
    src_rows = [[k, v] for k, v in data.sources.items()]
    blocks.append(Table(["source", "where"], src_rows, caption="Sources queried for this report."))
    return Section("Summary", "summary", blocks)


def _criteria_sentence(data: ReportData) -> str:
    meet, fail, none = [], [], []
    for b in data.branches.values():
        r = b.results
        if r is None:
            none.append(b.name)
            continue
        why = []
        if not r.accuracy > ACCURACY_CRITERION:
            why.append("accuracy")
        if not r.forecast_mae_pct < MAE_PCT_CRITERION:
            why.append("forecast MAE")
        if why:
            fail.append(f"{b.name} ({' and '.join(why)})")
        else:
            meet.append(b.name)
    clauses = [f"met by {', '.join(meet)}" if meet else "met by no branch"]
    if fail:
        clauses.append(f"missed by {', '.join(fail)}")
    if none:
        clauses.append(f"not checked for {', '.join(none)} (no results)")
    head = f"Success criteria (accuracy > {ACCURACY_CRITERION * 100:.0f} %, MAE < {MAE_PCT_CRITERION:.0f} %)"
    return f"{head}: {'; '.join(clauses)}."


def _criteria(data: ReportData) -> Section:
    rows = []
    for b in data.branches.values():
        r = b.results
        if r is None:
            rows.append([b.name, MISSING, MISSING, MISSING, MISSING, MISSING])
            continue
        acc_ok = r.accuracy > ACCURACY_CRITERION
        mae_ok = r.forecast_mae_pct < MAE_PCT_CRITERION
        rows.append(
            [
                b.name,
                pct(r.accuracy),
                "pass" if acc_ok else "FAIL",
                pct_value(r.forecast_mae_pct),
                "pass" if mae_ok else "FAIL",
                "meets both" if acc_ok and mae_ok else "does not meet",
            ]
        )
    return Section(
        "Success criteria",
        "criteria",
        [
            Para(
                f"The seed's criteria, checked per branch on the trainer's validation evaluation: "
                f"accuracy above "
                f"{ACCURACY_CRITERION * 100:.0f} % and forecast MAE below {MAE_PCT_CRITERION:.0f} % of the "
                "trajectory's extent."
            ),
            Table(
                [
                    "branch",
                    "val accuracy",
                    f"> {ACCURACY_CRITERION * 100:.0f} %",
                    "forecast MAE (% extent)",
                    f"< {MAE_PCT_CRITERION:.0f} %",
                    "verdict",
                ],
                rows,
            ),
        ],
    )


def _classification(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    rows = []
    for b in data.branches.values():
        r, s = b.results, b.served
        rows.append(
            [
                b.name,
                pct(r.accuracy) if r is not None else MISSING,
                pct(r.mean_class_accuracy) if r is not None else MISSING,
                str(r.samples) if r is not None else MISSING,
                pct(s.metrics.accuracy) if s is not None else MISSING,
                pct(s.metrics.mean_class_accuracy) if s is not None else MISSING,
                str(s.metrics.samples) if s is not None else MISSING,
                pct(r.zero_shot_accuracy) if r is not None and r.zero_shot_accuracy >= 0 else "n/a",
                track_classifier_accuracy(r) if r is not None else MISSING,
            ]
        )
    blocks: list[Block] = [
        Table(
            [
                "branch",
                "val accuracy",
                "mean class accuracy",
                "clips",
                "served accuracy",
                "served mean class accuracy",
                "served clips",
                "zero-shot accuracy",
                "track classifier alone",
            ],
            rows,
            caption="Trainer's evaluation (left) and the served ONNX model through the encoder (right); "
            "the last column scores the track classifier's share of the logits on its own (the motion "
            "class from the shape of the model's estimated track; n/a: the model has none).",
        )
    ]
    if "bars_accuracy" in figs:
        blocks.append(Figure(figs["bars_accuracy"]))
    return Section("Classification", "classification", blocks)


def _forecast(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    rows = []
    for b in data.branches.values():
        r = b.results
        if r is None:
            rows.append([b.name] + [MISSING] * 7)
            continue
        rows.append(
            [
                b.name,
                num(r.forecast_mae),
                num(r.forecast_rmse),
                pct_value(r.forecast_mae_pct),
                pct_value(r.forecast_rmse_pct),
                num(r.ade),
                num(r.fde),
                track_error(r),
            ]
        )
    blocks: list[Block] = [
        Table(
            [
                "branch",
                "MAE (world)",
                "RMSE (world)",
                "MAE (% extent)",
                "RMSE (% extent)",
                "ADE (world)",
                "FDE (world)",
                "observed track error (% extent)",
            ],
            rows,
            caption="Forecast of the next frames' 3D positions, trainer's evaluation. Observed track "
            "error: how far the model's own estimate of the object's positions in the frames it saw is "
            "from the truth (n/a: the model has no track readout).",
        )
    ]
    if "bars_mae" in figs:
        blocks.append(Figure(figs["bars_mae"]))
    return Section("Forecast", "forecast", blocks)


def _per_class(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    blocks: list[Block] = []
    for b in data.branches.values():
        r = b.results
        if r is None:
            blocks.append(Para(f"{b.name}: per-class figures {MISSING}."))
            continue
        best: dict[str, tuple[str, float]] = {}
        for bl in r.baselines:
            if bl.forecast_mae < 0:
                continue
            for c in bl.per_class:
                if c.class_name not in best or c.forecast_mae_pct < best[c.class_name][1]:
                    best[c.class_name] = (bl.name, c.forecast_mae_pct)
        served_pc = b.served.metrics.per_class_accuracy if b.served is not None else None
        rows = []
        for i, c in enumerate(r.per_class):
            bb = best.get(c.class_name)
            sv = served_pc[i] if served_pc is not None and i < len(served_pc) else None
            rows.append(
                [
                    c.class_name,
                    str(c.support),
                    pct(c.accuracy),
                    pct(sv) if served_pc is not None else MISSING,
                    num(c.forecast_mae),
                    pct_value(c.forecast_mae_pct),
                    num(c.ade),
                    num(c.fde),
                    f"{pct_value(bb[1])} ({bb[0]})" if bb else "n/a",
                ]
            )
        blocks.append(
            Table(
                [
                    "class",
                    "support",
                    "accuracy",
                    "served accuracy",
                    "MAE (world)",
                    "MAE (% extent)",
                    "ADE (world)",
                    "FDE (world)",
                    "best physics baseline MAE",
                ],
                rows,
                caption=f"{b.name}: per-class figures.",
            )
        )
        if f"confusion_{b.name}" in figs:
            blocks.append(Figure(figs[f"confusion_{b.name}"]))
    return Section("Per-class figures", "per-class", blocks)


def _curves(data: ReportData, figs: dict[str, FigureRef]) -> Section:
    rows = []
    for b in data.branches.values():
        c = b.curves
        if c is None:
            reason = next((m.reason for m in b.missing if m.section == "training curves"), "")
            rows.append([b.name, MISSING, "0", reason])
        else:
            rows.append([b.name, c.source, str(len(c.epochs)), c.note])
    blocks: list[Block] = [Table(["branch", "curves from", "epochs", "note"], rows)]
    for key in ("curves_loss", "curves_accuracy", "curves_mae"):
        if key in figs:
            blocks.append(Figure(figs[key]))
    return Section("Training curves", "curves", blocks)


def _notes(data: ReportData) -> Section:
    if not data.notes:
        return Section("Findings", "findings", [Para("No warnings from the trainers or the cross-checks.")])
    return Section(
        "Findings",
        "findings",
        [
            Para("Warnings from the trainers' evaluations and the reporter's cross-checks:"),
            Bullets(list(data.notes)),
        ],
    )


def _missing(data: ReportData) -> Section:
    items = data.all_missing()
    if not items:
        return Section("Missing", "missing", [Para("Nothing is missing: every source answered.")])
    rows = [[m.section, m.branch or "all", m.reason] for m in items]
    return Section(
        "Missing",
        "missing",
        [
            Para("What could not be collected, and why. These figures are left out, not estimated."),
            Table(["section", "branch", "reason"], rows),
        ],
    )


def _method(data: ReportData) -> Section:
    v = data.validation
    items = [
        "Headline figures: the served ONNX models through the encoder on the dataset's held-out test split "
        "(never used in training, early stopping or choosing settings), with the statistics of the "
        "Statistics section; the trainer's own figures are on the validation split.",
        "Accuracy: share of clips whose predicted class is the true one; mean class accuracy: "
        "the mean of the per-class accuracies (recall).",
        "Forecast MAE / RMSE: over clips, forecast frames and axes, in world units; '% of extent' divides "
        "each clip's error by that trajectory's extent (largest range over the axes) before averaging.",
        "ADE: mean Euclidean distance over the forecast frames; FDE: at the last forecast frame.",
        f"Winner rule `{data.winner.rule}`: {data.winner.rule_text}.",
        "Curves come from Prometheus (the trainers' gauges paired per scrape with the epoch gauge) when "
        "it holds every epoch, else from the trainers' GetHistory, as the curves table says.",
    ]
    if v is not None:
        items.append(
            f"Clips scored through the encoder: {len(v)} of the {v.split} split from "
            f"{v.source or 'the given split'} ({v.frames} observed frames, "
            f"{v.horizon} forecast frames, {v.fps:g} fps)"
            + (f", dataset manifest sha256 {v.manifest_sha256[:16]}…" if v.manifest_sha256 else "")
            + "."
        )
    return Section("Method", "method", [Bullets(items)])

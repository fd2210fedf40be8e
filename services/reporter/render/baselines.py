"""The report's "Baselines" section: physics baselines given the true observed positions and,
for models with the track readout, the same baselines given the model's own track; and the
track figures the other sections show."""

from __future__ import annotations

from services.reporter.model import ReportData
from services.reporter.render.blocks import MISSING, Block, Para, Section, Table, num, pct, pct_value, points
from trajlab.trainer.v1 import trainer_pb2


def baselines_section(data: ReportData) -> Section:
    blocks: list[Block] = [
        Para(
            "Each branch beside the reference predictors scored on the same validation split: chance for "
            "classification, physics extrapolations for the forecast. Δ is the branch minus the baseline, in "
            "percentage points: positive Δ accuracy and negative Δ MAE mean the branch is better."
        )
    ]
    any_rows = False
    for b in data.branches.values():
        r = b.results
        if r is None or not len(r.baselines):
            continue
        any_rows = True
        rows = [
            [f"**{b.name}**", pct(r.accuracy), "", pct_value(r.forecast_mae_pct), "", num(r.ade), num(r.fde)]
        ]
        for bl in r.baselines:
            has_acc, has_fc = bl.accuracy >= 0, bl.forecast_mae >= 0
            rows.append(
                [
                    bl.name,
                    pct(bl.accuracy) if has_acc else "n/a",
                    points(r.accuracy - bl.accuracy, frac=True) if has_acc else "",
                    pct_value(bl.forecast_mae_pct) if has_fc else "n/a",
                    points(r.forecast_mae_pct - bl.forecast_mae_pct, frac=False) if has_fc else "",
                    num(bl.ade) if has_fc else "n/a",
                    num(bl.fde) if has_fc else "n/a",
                ]
            )
        blocks.append(
            Table(
                [
                    "predictor",
                    "accuracy",
                    "Δ accuracy",
                    "MAE (% extent)",
                    "Δ MAE",
                    "ADE (world)",
                    "FDE (world)",
                ],
                rows,
                caption=f"{b.name} against the baselines.",
            )
        )
    if not any_rows:
        blocks.append(Para(f"Baselines: {MISSING} (no branch has evaluation results)."))
    blocks.extend(own_trackbaselines_section(data))
    return Section("Baselines", "baselines", blocks)


# The forecasters the trainer also runs on a model's own observed track, in table order.
OWN_TRACK_BASELINES: tuple[str, ...] = (
    "constant_velocity",
    "constant_acceleration",
    "constant_turn_rate",
    "best_of",
)


def has_track(r: trainer_pb2.EvaluationResults) -> bool:
    # Results of older runs, or of a model with the track readout off, leave the message unset.
    return r.HasField("observed_track") and r.observed_track.present


def track_classifier_accuracy(r: trainer_pb2.EvaluationResults) -> str:
    t = r.observed_track
    if not has_track(r) or not t.HasField("classifier_accuracy") or t.classifier_accuracy < 0:
        return "n/a"
    return pct(t.classifier_accuracy)


def track_error(r: trainer_pb2.EvaluationResults) -> str:
    return pct_value(r.observed_track.observed_mae_pct) if has_track(r) else "n/a"


def own_trackbaselines_section(data: ReportData) -> list[Block]:
    """Physics on each branch's own estimated track beside the branch's forecast."""
    with_results = [b for b in data.branches.values() if b.results is not None]
    if not with_results:
        return []
    if not any(has_track(b.results) for b in with_results if b.results is not None):
        return [
            Para(
                "Baselines on the models' own observed tracks: n/a (no branch's results carry a track "
                "readout: older runs, or the readout switched off)."
            )
        ]
    rows = []
    for b in with_results:
        r = b.results
        if r is None:
            continue
        if not has_track(r):
            rows.append([b.name, pct_value(r.forecast_mae_pct), "n/a"] + ["n/a"] * len(OWN_TRACK_BASELINES))
            continue
        own = {bl.name: bl for bl in r.observed_track.baselines}
        cells = []
        for name in OWN_TRACK_BASELINES:
            bl = own.get(name)
            cells.append(MISSING if bl is None or bl.forecast_mae < 0 else pct_value(bl.forecast_mae_pct))
        rows.append([b.name, pct_value(r.forecast_mae_pct), track_error(r), *cells])
    return [
        Para(
            "The baselines above are given the true observed positions: what perfect perception would "
            "give. Below, the same physics is given each model's own estimate of the observed track, "
            "i.e. the same pixels the model saw; a model whose forecast loses to these is not using its "
            "own evidence well."
        ),
        Table(
            [
                "branch",
                "model forecast MAE (% extent)",
                "observed track error (% extent)",
                *(f"{name} on own track (% extent)" for name in OWN_TRACK_BASELINES),
            ],
            rows,
            caption="Forecast MAE of the physics baselines applied to each branch's own observed track "
            "(n/a: the model has no track readout).",
        ),
    ]

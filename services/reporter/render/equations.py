"""The report's "Equations graded" section: the describer given the true positions beside
"pixels to equation" (the describer given the served model's own observed track), per branch and
per backend, and which stage each failure from pixels comes from. The grading is
services.reporter.equation_grading; this module only lays it out."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from services.reporter.equation_grading import (
    ACCURATE_PCT,
    BLAME_BOTH,
    BLAME_FIT,
    BLAME_NONE,
    BLAME_TRACK,
    TRACK_OK_PCT,
    EquationGrade,
    GradeSummary,
    blame,
    grade_sample,
    summarise,
    track_rms_pct,
)
from services.reporter.model import BranchReport, ReportData, SampleDescription
from services.reporter.render.blocks import MISSING, Block, Para, Section, Table, pct_value

WAYS = ("true positions", "pixels to equation")


def _backend(s: SampleDescription) -> str:
    if s.fallback_used:
        return f"{s.backend_used or 'analytic'} (fallback from {s.backend_requested})"
    return s.backend_used or s.backend_requested or "(unknown)"


def _params_text(errors: dict[str, float]) -> str:
    if not errors:
        return "n/a"
    parts = []
    for k, v in errors.items():
        if not math.isfinite(v):
            parts.append(f"{k} undefined")
        elif k in ("direction", "normal"):
            parts.append(f"{'axis/normal' if k == 'normal' else k} {v:.1f}°")
        else:
            parts.append(f"{k} {v * 100:.1f} %")
    return ", ".join(parts)


def _summary_row(branch: str, backend: str, way: str, s: GradeSummary) -> list[str]:
    return [
        branch, backend, way, str(s.clips), pct_value(s.family_right_pct), pct_value(s.right_pct),
        pct_value(s.observed_rms_pct), pct_value(s.forecast_rms_pct), pct_value(s.model_forecast_rms_pct),
        _params_text(s.parameter_errors),
    ]


def _graded(data: ReportData, b: BranchReport) -> Graded:
    out: Graded = {}
    assert data.validation is not None
    for way, samples in zip(WAYS, (b.samples, b.track_samples), strict=True):
        out[way] = [(s, g) for s in samples if (g := grade_sample(s, data.validation)) is not None]
    return out


Graded = dict[str, list[tuple[SampleDescription, EquationGrade]]]


def _blame_rows(b: BranchReport, graded: Graded) -> list[list[str]]:
    truth = {s.index: (s, g) for s, g in graded[WAYS[0]]}
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s, g in graded[WAYS[1]]:
        t = truth.get(s.index)
        err = None
        if s.track is not None and len(s.track) == len(s.observed):
            # The whole track against the true observed positions, % of the trajectory's extent.
            extent = float(np.ptp(np.concatenate([s.observed, s.truth_future]), axis=0).max())
            err = track_rms_pct(s.track, s.observed, extent) if extent > 0 else None
        counts[_backend(s)][blame(t[1] if t else None, g, err) or "undecided"] += 1
    rows = []
    for backend, c in sorted(counts.items()):
        n = sum(c.values())
        rows.append([
            b.name, backend, str(n), str(c[BLAME_NONE]), str(c[BLAME_TRACK]), str(c[BLAME_FIT]),
            str(c[BLAME_BOTH]), str(c["undecided"]),
        ])
    return rows


def equations_section(data: ReportData) -> Section:
    """The section; "missing" with its reason when nothing was graded."""
    blocks: list[Block] = [Para(
        "Each answer's equations graded two ways on the same clips: (1) the describer given the true "
        "observed positions, and (2) pixels to equation, the describer given the served model's own "
        "observed track (its frames with confidence of at least 0.3), both against the true trajectory. "
        "The family is what the equations are (read off their form); the physical parameters (speed and "
        "direction; radius, period and plane normal; radius, pitch and axis; gravity) are read off the "
        "equations' derivatives and compared with the dataset's generating parameters, on answers of "
        "the right family (median relative error, angles in degrees). RMS errors are medians over clips, "
        "% of the trajectory's extent, on the observed frames and on the forecast frames (the equation "
        f"extrapolated), beside the model's own forecast. Right = right family and observed RMS at most "
        f"{ACCURATE_PCT:g} %."
    )]
    if data.validation is None or not any(b.samples for b in data.branches.values()):
        reason = next((m.reason for m in data.missing if m.section == "equations"), "no samples described")
        blocks.append(Para(f"{MISSING}: {reason}"))
        return Section("Equations graded: true positions and pixels to equation", "equations-graded", blocks)
    rows, blame_rows, no_track = [], [], []
    for b in data.branches.values():
        if not b.samples:
            continue
        graded = _graded(data, b)
        for way in WAYS:
            by_backend: dict[str, list[EquationGrade]] = defaultdict(list)
            for s, g in graded[way]:
                by_backend[_backend(s)].append(g)
            for backend, grades in sorted(by_backend.items()):
                summary = summarise(grades)
                if summary is not None:
                    rows.append(_summary_row(b.name, backend, way, summary))
        if b.track_samples:
            blame_rows += _blame_rows(b, graded)
        else:
            no_track.append(b.name)
    blocks.append(Table(
        ["branch", "backend", "given", "clips", "family right", "right", "RMS observed", "RMS forecast "
         "(equation)", "RMS forecast (model)", "parameter error (median)"],
        rows, caption="Equations graded against the true trajectory.",
    ))
    if blame_rows:
        blocks.append(Para(
            "Where each failure from pixels comes from: the track, when the describer given the true "
            "positions is right but not from the track; the describer's fit, when it is wrong on the true "
            f"positions too while the track is within {TRACK_OK_PCT:g} % of extent (RMS) of them; both, "
            "when it is wrong on the true positions and the track is off as well."
        ))
        blocks.append(Table(
            ["branch", "backend", "answers from pixels", "right", "track", "describer fit", "both",
             "undecided"], blame_rows, caption="Failures of pixels to equation, by stage.",
        ))
    if no_track:
        blocks.append(Para(
            f"No pixels-to-equation grade for {', '.join(no_track)}: the served model exports no observed "
            "track (or there was no served model)."
        ))
    return Section("Equations graded: true positions and pixels to equation", "equations-graded", blocks)

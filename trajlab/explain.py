"""From pixels to equation: a clip -> the encoder's Analyze -> the describer's Describe.

The chain lives in the client, not in a service: each stage keeps its own deadline and
its own status codes (an encoder NOT_FOUND stays an encoder NOT_FOUND), the describer
never depends on the encoder being up, and a gRPC user in another language makes the
same two calls: ``EncoderService/Analyze`` on the clip, then ``DescriberService/Describe``
with ``observed = AnalyzeResponse.observed_track`` (times ``track_times``), ``forecast =
positions`` (times ``times``) and ``predicted_class = motion_class``.

A model without a track (``ModelInfo.has_track`` false) still gives its class and
forecast; the equations are then fitted to the forecast alone, and the answer says so.
Frames whose track confidence is below ``min_confidence`` are left out of the fit (the
object was hidden or not found there), as long as enough frames remain.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from trajlab.clients.describer import Described, DescriberClient
from trajlab.clients.encoder import Analysis, EncoderClient
from trajlab.errors import InvalidArgument

MIN_POINTS = 3  # the describer's minimum number of observed points


@dataclass(frozen=True)
class Explanation:
    """Everything ``trajlab explain`` shows; ``to_dict`` is its ``--json``."""

    clip: str
    branch: str
    version: int
    class_name: str
    probabilities: dict[str, float]
    forecast: np.ndarray  # (horizon, 3) world units
    forecast_times: np.ndarray  # (horizon,) s
    track: np.ndarray | None  # (T, 3) world units, the model's own; None without a track
    track_confidence: np.ndarray | None  # (T,)
    track_times: np.ndarray | None  # (T,) s
    fitted_on: str  # "observed track" or "forecast only"
    points_used: int  # how many positions the equations were fitted to
    described: Described
    analyze_ms: float
    describe_ms: float
    notes: list[str] = field(default_factory=list)  # what was done to the clip and the track

    def to_dict(self) -> dict[str, Any]:
        # One level by hand: asdict would deep-copy every array only to turn it into a list.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in out.items():
            if isinstance(value, np.ndarray):
                out[key] = value.tolist()
        out["described"] = asdict(self.described)
        out["probabilities"] = dict(self.probabilities)
        out["notes"] = list(self.notes)
        return out


def _points_to_fit(
    a: Analysis, min_confidence: float, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """Positions and times the describer fits: the confident part of the track, else the forecast."""
    if a.track is None or a.track_times is None:
        notes.append("the model exports no observed track: the equations are fitted to its forecast alone")
        return a.forecast.positions, a.forecast.times, "forecast only"
    keep = np.ones(len(a.track), bool)
    if a.track_confidence is not None:
        keep = a.track_confidence >= min_confidence
        dropped = int((~keep).sum())
        if dropped and keep.sum() >= MIN_POINTS:
            notes.append(f"left out {dropped} frames whose track confidence is below {min_confidence:g}")
        elif dropped:
            notes.append(f"{dropped} frames have a track confidence below {min_confidence:g}; all kept")
            keep[:] = True
    return a.track[keep], a.track_times[keep], "observed track"


def explain(
    encoder: EncoderClient,
    describer: DescriberClient,
    clip: np.ndarray,
    *,
    fps: float,
    branch: str,
    version: int = 0,
    backend: str = "",
    source: str = "clip",
    notes: list[str] | None = None,
    min_confidence: float = 0.3,
    analyze_timeout: float = 10.0,
    describe_timeout: float = 30.0,
) -> Explanation:
    """Analyze ``clip`` (already in the model's input shape) and describe the model's own track."""
    _check_confidence(min_confidence)
    start = time.perf_counter()
    a = encoder.analyze(clip, branch=branch, version=version, fps=fps, timeout=analyze_timeout)
    analyze_ms = (time.perf_counter() - start) * 1e3
    return describe_analysis(
        describer,
        a,
        analyze_ms=analyze_ms,
        branch=branch,
        backend=backend,
        source=source,
        notes=notes,
        min_confidence=min_confidence,
        describe_timeout=describe_timeout,
    )


def _check_confidence(min_confidence: float) -> None:
    if not 0.0 <= min_confidence <= 1.0:
        raise InvalidArgument(f"min_confidence must be in [0, 1], got {min_confidence}")


def describe_analysis(
    describer: DescriberClient,
    a: Analysis,
    *,
    analyze_ms: float,
    branch: str,
    backend: str = "",
    source: str = "clip",
    notes: list[str] | None = None,
    min_confidence: float = 0.3,
    describe_timeout: float = 30.0,
) -> Explanation:
    """The second stage: Describe the model's own track from an Analyze answer ``a``
    (``trajlab.analyze_fitted`` gets one for a clip of any shape), taking ``analyze_ms``."""
    _check_confidence(min_confidence)
    notes = list(notes or [])
    points, times, fitted_on = _points_to_fit(a, min_confidence, notes)
    start = time.perf_counter()
    described = describer.describe(
        points,
        times,
        forecast=a.forecast.positions if fitted_on == "observed track" else None,
        forecast_times=a.forecast.times if fitted_on == "observed track" else None,
        predicted_class=a.classification.class_name,
        backend=backend,
        branch=branch,
        timeout=describe_timeout,
    )
    describe_ms = (time.perf_counter() - start) * 1e3
    c = a.classification
    return Explanation(
        clip=source,
        branch=c.branch,
        version=c.version,
        class_name=c.class_name,
        probabilities=dict(c.probabilities),
        forecast=a.forecast.positions,
        forecast_times=a.forecast.times,
        track=a.track,
        track_confidence=a.track_confidence,
        track_times=a.track_times,
        fitted_on=fitted_on,
        points_used=len(points),
        described=described,
        analyze_ms=analyze_ms,
        describe_ms=describe_ms,
        notes=notes,
    )

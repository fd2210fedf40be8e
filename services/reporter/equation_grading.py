"""Grading an answer's equations x(t), y(t), z(t) against the true trajectory (pure, no I/O).

The report grades equations two ways (issue 21): the describer given the true positions, and
"pixels to equation", the describer given the served model's own observed track. Each answer
is graded the same way here:

- family: the kind of motion the equations *are* (read off their sympy form, whatever the
  backend said): trigonometric terms make a circle, plus a drift a helix; otherwise a ``t**2``
  term that bends the path makes a parabola, else a line. A term that moves the point by less
  than ``NEGLIGIBLE`` of the trajectory's extent over the clip does not count.
- the physical parameters of the true family, read off the equation's derivatives (sympy) at
  the observed times, against the dataset's own generating parameters: speed and direction
  (linear); radius, period and plane normal (circular); radius, pitch and axis (helical);
  gravity (parabolic). For a uniform circle or helix with acceleration ``a`` and jerk ``j``:
  the axis is ``a x j``, ``omega = |j| / |a|``, ``radius = |a| / omega**2`` and the pitch
  ``2 pi |v . axis| / omega``. Sizes are relative errors; directions are angles in degrees
  (a normal or axis as a line: its sign does not count). Only graded when the family is right.
- RMS error on the observed frames and on the forecast frames (the equation extrapolated),
  each as % of the trajectory's extent (per-frame Euclidean error, RMS over frames), beside the
  model's own forecast error on the same frames.

"Right" is the family right and the observed RMS at most ``ACCURATE_PCT`` (the describer's
own accuracy threshold). :func:`blame` says which stage a failure from pixels comes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trajlab.equations import UnsafeEquation, parse_equations

ACCURATE_PCT = 5.0  # an answer is right with the right family and observed RMS <= 5 % of extent
TRACK_OK_PCT = 5.0  # a track within 5 % of extent (RMS) of the true observed positions is "good"
NEGLIGIBLE = 0.02  # a term moving the point by less than 2 % of the extent over the clip is absent

# The stages a failure from pixels is attributed to (blame()).
BLAME_NONE, BLAME_TRACK, BLAME_FIT, BLAME_BOTH = "none", "track", "describer fit", "both"


@dataclass(frozen=True)
class MotionParams:
    """The physical parameters that define a motion; None where a family has no such parameter."""

    speed: float | None = None  # linear: |v|, units/s
    direction: tuple[float, float, float] | None = None  # linear: unit velocity
    radius: float | None = None  # circular, helical: units
    period: float | None = None  # circular, helical: seconds per turn
    normal: tuple[float, float, float] | None = None  # circular: plane normal; helical: axis
    pitch: float | None = None  # helical: units per turn
    gravity: float | None = None  # parabolic: |acceleration|, units/s^2


# Which parameters grade which family; "normal" is the helix's axis.
FAMILY_PARAMETERS: dict[str, tuple[str, ...]] = {
    "linear": ("speed", "direction"),
    "circular": ("radius", "period", "normal"),
    "helical": ("radius", "pitch", "normal"),
    "parabolic": ("gravity",),
}
_ANGLES = ("direction", "normal")  # graded in degrees; the rest as relative errors
_LINES = ("normal",)  # a line, not an arrow: n and -n are the same


@dataclass
class EquationGrade:
    """One answer's equations against one true trajectory."""

    family: str  # the family the equations are ("linear", ..., "other", "unparsable")
    true_family: str
    parameter_errors: dict[str, float] = field(default_factory=dict)  # relative, or degrees (_ANGLES)
    observed_rms_pct: float = math.inf  # % of extent, on the observed frames
    forecast_rms_pct: float = math.inf  # % of extent, the equation extrapolated to the forecast frames
    model_forecast_rms_pct: float | None = None  # % of extent, the model's own forecast, same frames
    error: str = ""  # why the equations could not be graded

    @property
    def family_right(self) -> bool:
        return self.family == self.true_family

    @property
    def right(self) -> bool:
        return self.family_right and self.observed_rms_pct <= ACCURATE_PCT


def _unit(v: np.ndarray) -> tuple[float, float, float] | None:
    n = float(np.linalg.norm(v))
    if not math.isfinite(n) or n < 1e-12:
        return None
    u = v / n
    return (float(u[0]), float(u[1]), float(u[2]))


def _sympy_axes(equations: Sequence[str]) -> list[Any]:
    """The three equations as sympy expressions in the plain symbol ``t`` (through the safe parser)."""
    import sympy

    t = sympy.Symbol("t")
    out = []
    for e in parse_equations(equations):
        expr = e.to_sympy()
        out.append(expr.subs({s: t for s in expr.free_symbols if s.name == "t"}))
    return out


def _evaluate(expr: Any, times: np.ndarray) -> np.ndarray:
    """A sympy expression of the checked equation tree at ``times``, float64 (T,)."""
    import sympy

    fn = sympy.lambdify(sympy.Symbol("t"), expr, modules="numpy")
    with np.errstate(all="ignore"):
        out = np.asarray(fn(times), dtype=np.float64)
    return np.broadcast_to(out, times.shape).astype(np.float64)


def _curve(exprs: Sequence[Any], times: np.ndarray, order: int = 0) -> np.ndarray:
    """(T, 3): the equations' ``order``-th time derivative at ``times``."""
    import sympy

    t = sympy.Symbol("t")
    return np.stack([_evaluate(sympy.diff(e, t, order) if order else e, times) for e in exprs], axis=1)


def _moves(expr: Any, times: np.ndarray, extent: float) -> bool:
    """Whether ``expr`` moves by at least NEGLIGIBLE of ``extent`` over ``times``."""
    v = _evaluate(expr, times)
    return bool(np.all(np.isfinite(v))) and float(np.ptp(v)) >= NEGLIGIBLE * extent


def family_of(exprs: Sequence[Any], times: np.ndarray, extent: float) -> str:
    """The motion family of sympy expressions x(t), y(t), z(t) over ``times`` (see the module)."""
    import sympy

    t = sympy.Symbol("t")
    trig = (sympy.sin, sympy.cos, sympy.tan)
    periodic = [sum((a for a in sympy.Add.make_args(e) if a.has(*trig)), sympy.Integer(0)) for e in exprs]
    if any(_moves(p, times, extent) for p in periodic):
        rest = [e - p for e, p in zip(exprs, periodic, strict=True)]
        drift = any(_moves(r, times, extent) for r in rest)
        return "helical" if drift else "circular"
    if any(e.has(sympy.exp, sympy.log, sympy.sinh, sympy.cosh, sympy.tanh, *trig) for e in exprs):
        return "other"
    if not all(e.is_polynomial(t) for e in exprs):
        return "other"
    linear_part = [e.subs(t, 0) + sympy.diff(e, t).subs(t, 0) * t for e in exprs]
    if any(_moves(e - lin, times, extent) for e, lin in zip(exprs, linear_part, strict=True)):
        return "parabolic"
    return "linear"


def params_from_equations(exprs: Sequence[Any], family: str, times: np.ndarray) -> MotionParams:
    """``family``'s parameters read off the equations' derivatives at ``times`` (medians)."""
    v = _curve(exprs, times, 1)
    a = _curve(exprs, times, 2)
    if family == "linear":
        vel = np.median(v, axis=0)
        return MotionParams(speed=float(np.linalg.norm(vel)), direction=_unit(vel))
    if family == "parabolic":
        return MotionParams(gravity=float(np.linalg.norm(np.median(a, axis=0))))
    if family not in ("circular", "helical"):
        return MotionParams()
    j = _curve(exprs, times, 3)
    na, nj = np.linalg.norm(a, axis=1), np.linalg.norm(j, axis=1)
    ok = (na > 1e-12) & np.isfinite(na) & np.isfinite(nj)
    if not ok.any():
        return MotionParams()
    omega = float(np.median(nj[ok] / na[ok]))
    radius = float(np.median(na[ok])) / omega**2 if omega > 0 else math.inf
    axes = np.cross(a[ok], j[ok])
    # One orientation for every frame before the median (a x j keeps its sign for a uniform turn).
    axes *= np.sign(axes @ axes[0])[:, None]
    axis = _unit(np.median(axes, axis=0))
    period = 2 * math.pi / omega if omega > 0 else math.inf
    if family == "circular":
        return MotionParams(radius=radius, period=period, normal=axis)
    axial = float(np.median(np.abs(v[ok] @ np.asarray(axis)))) if axis is not None else math.nan
    return MotionParams(radius=radius, normal=axis, pitch=axial * period)


def params_from_dataset(family: str, params: Mapping[str, Any]) -> MotionParams:
    """The generating parameters the dataset stores for a sample (trajlab.data.trajectories)."""
    if family == "linear":
        vel = np.asarray(params["velocity"], dtype=np.float64)
        return MotionParams(speed=float(np.linalg.norm(vel)), direction=_unit(vel))
    if family == "parabolic":
        return MotionParams(gravity=float(params["gravity"]))
    omega = float(params["omega"])
    if family == "circular":
        return MotionParams(
            radius=float(params["radius"]), period=2 * math.pi / omega,
            normal=_unit(np.asarray(params["normal"], dtype=np.float64)),
        )
    if family == "helical":
        return MotionParams(
            radius=float(params["radius"]), pitch=float(params["pitch"]),
            normal=_unit(np.asarray(params["axis"], dtype=np.float64)),
        )
    raise ValueError(
        f"params_from_dataset: unknown family {family!r}; expected one of {list(FAMILY_PARAMETERS)}"
    )


def parameter_errors(got: MotionParams, true: MotionParams, family: str) -> dict[str, float]:
    """Per parameter of ``family``: |got - true| / |true|, or the angle in degrees for directions.

    A parameter the equations do not define (a degenerate fit) is ``inf``.
    """
    out: dict[str, float] = {}
    for name in FAMILY_PARAMETERS.get(family, ()):
        g, w = getattr(got, name), getattr(true, name)
        if w is None:
            continue
        if g is None or (isinstance(g, float) and not math.isfinite(g)):
            out[name] = math.inf
        elif name in _ANGLES:
            cos = float(np.clip(np.dot(g, w), -1.0, 1.0))
            if name in _LINES:
                cos = abs(cos)
            out[name] = math.degrees(math.acos(cos))
        else:
            out[name] = abs(g - w) / abs(w) if w else math.inf
    return out


def _rms_pct(pred: np.ndarray, truth: np.ndarray, extent: float) -> float:
    if len(truth) == 0 or not np.all(np.isfinite(pred)):
        return math.inf
    return float(np.sqrt(np.mean(np.sum((pred - truth) ** 2, axis=1)))) / extent * 100.0


def grade(
    equations: Sequence[str],
    *,
    true_family: str,
    true_params: Mapping[str, Any] | None,
    positions: np.ndarray,
    times: np.ndarray,
    frames: int,
    forecast: np.ndarray | None = None,
) -> EquationGrade:
    """Grade ``equations`` against the true trajectory ``positions`` (T + horizon, 3) at ``times``.

    The first ``frames`` rows are the observed frames, the rest the forecast frames;
    ``true_params`` are the dataset's generating parameters (None: read off the true equations
    is the caller's choice; then no parameter is graded). ``forecast`` (horizon, 3) is the
    model's own, scored on the same frames.
    """
    p = np.asarray(positions, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    extent = float(np.ptp(p, axis=0).max())
    out = EquationGrade(family="unparsable", true_family=true_family)
    if forecast is not None and len(forecast) == len(p) - frames:
        out.model_forecast_rms_pct = _rms_pct(np.asarray(forecast, np.float64), p[frames:], extent)
    if extent <= 0:
        out.error = "the true trajectory does not move"
        return out
    try:
        exprs = _sympy_axes(equations)
    except UnsafeEquation as exc:
        out.error = f"unparsable: {exc}"
        return out
    try:
        _grade_parsed(out, exprs, true_params, p, t, frames, extent)
    except (ArithmeticError, ValueError, TypeError) as exc:
        # sympy or numpy on an odd (parsable) answer, e.g. a complex value: wrong, with the reason,
        # never a report that fails to build.
        out.family = "ungradable"
        out.error = f"could not grade: {type(exc).__name__}: {exc}"
    return out


def _grade_parsed(
    out: EquationGrade, exprs: list[Any], true_params: Mapping[str, Any] | None, p: np.ndarray,
    t: np.ndarray, frames: int, extent: float,
) -> None:
    pred = _curve(exprs, t)
    out.observed_rms_pct = _rms_pct(pred[:frames], p[:frames], extent)
    out.forecast_rms_pct = _rms_pct(pred[frames:], p[frames:], extent)
    observed_t = t[:frames]
    out.family = family_of(exprs, observed_t, extent)
    if out.family_right and true_params is not None:
        got = params_from_equations(exprs, out.true_family, observed_t)
        true = params_from_dataset(out.true_family, true_params)
        out.parameter_errors = parameter_errors(got, true, out.true_family)


def blame(truth: EquationGrade | None, pixels: EquationGrade | None, track_rms_pct: float | None) -> str:
    """Which stage a pixels-to-equation answer's failure comes from.

    - the answer from pixels is right: ``none``;
    - the describer given the true positions is right, but not from the track: ``track``;
    - the describer is wrong on the true positions too, and the track is good (within
      TRACK_OK_PCT of the true observed positions): ``describer fit``;
    - the describer is wrong on the true positions and the track is off as well: ``both``.

    Without both grades (or without the track's error when it is needed) the answer is ``""``.
    """
    if pixels is None or truth is None:
        return ""
    if pixels.right:
        return BLAME_NONE
    if truth.right:
        return BLAME_TRACK
    if track_rms_pct is None:
        return ""
    return BLAME_FIT if track_rms_pct <= TRACK_OK_PCT else BLAME_BOTH


def track_rms_pct(track: np.ndarray, observed: np.ndarray, extent: float) -> float:
    """The track's RMS error (% of ``extent``) against the true observed positions (T, 3)."""
    return _rms_pct(np.asarray(track, np.float64), np.asarray(observed, np.float64), extent)


@dataclass
class GradeSummary:
    """Grades of one (branch, backend, way) pooled: medians and shares over clips."""

    clips: int
    family_right_pct: float
    right_pct: float
    observed_rms_pct: float  # median, % of extent
    forecast_rms_pct: float  # median, % of extent
    model_forecast_rms_pct: float | None  # median, % of extent
    parameter_errors: dict[str, float]  # median per parameter name over clips whose family is right


def summarise(grades: Sequence[EquationGrade]) -> GradeSummary | None:
    """Pool ``grades``; None for none."""
    if not grades:
        return None
    n = len(grades)
    params: dict[str, list[float]] = {}
    for g in grades:
        for k, v in g.parameter_errors.items():
            params.setdefault(k, []).append(v)
    model = [g.model_forecast_rms_pct for g in grades if g.model_forecast_rms_pct is not None]
    return GradeSummary(
        clips=n,
        family_right_pct=100.0 * sum(g.family_right for g in grades) / n,
        right_pct=100.0 * sum(g.right for g in grades) / n,
        observed_rms_pct=float(np.median([g.observed_rms_pct for g in grades])),
        forecast_rms_pct=float(np.median([g.forecast_rms_pct for g in grades])),
        model_forecast_rms_pct=float(np.median(model)) if model else None,
        parameter_errors={k: float(np.median(v)) for k, v in sorted(params.items())},
    )


def grade_sample(sample: Any, validation: Any) -> EquationGrade | None:
    """Grade one describer answer (``model.SampleDescription``) on a ``model.ValidationSet`` clip;
    None when the describer did not answer."""
    if sample.error:
        return None
    i = int(sample.index)
    params = validation.params[i] if i < len(validation.params) else None
    positions = np.concatenate([sample.observed, sample.truth_future], axis=0)
    return grade(
        sample.equations, true_family=sample.true_class, true_params=params, positions=positions,
        times=np.asarray(validation.times, np.float64)[: len(positions)], frames=len(sample.observed),
        forecast=sample.forecast,
    )

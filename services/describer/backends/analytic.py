"""The analytic backend: least-squares fits, canonical equations, a description from the fit.

Needs no network and is deterministic: the same points give the same text. It is
also what every other backend falls back to.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from services.describer.backends.base import Description, Trajectory
from services.describer.fitting import MotionFit, fit_motion
from trajlab.equations import MAX_EXPONENT as EQ_MAX_EXPONENT
from trajlab.equations import MAX_LITERAL as EQ_MAX_LITERAL

NUMBER_DIGITS = 6  # significant digits written into equations (1e-6 relative, far below 1 %)


# Numbers above the parser's MAX_LITERAL are written as m*10**8*...: what this backend
# emits, trajlab.equations must parse (a Unix timestamp is ~1.8e9, above the limit).
_FACTOR_EXP = int(min(EQ_MAX_EXPONENT, math.floor(math.log10(EQ_MAX_LITERAL))))
_FACTOR = 10.0**_FACTOR_EXP


def _parsable(mag: float, text: Callable[[float], str]) -> str:
    """``text(m)`` + ``*10**8`` repeated so that m stays within the parser's literal limit."""
    factors = 0
    while mag > EQ_MAX_LITERAL and factors < 16:
        mag /= _FACTOR
        factors += 1
    return text(mag) + f"*10**{_FACTOR_EXP}" * factors


def _num(v: float) -> str:
    s = f"{v:.{NUMBER_DIGITS}g}"
    if s in ("-0", "0"):
        return "0"
    if abs(v) <= EQ_MAX_LITERAL:
        return s
    body = _parsable(abs(v), lambda m: f"{m:.{NUMBER_DIGITS}g}")
    return f"-{body}" if v < 0 else body


def _time_variable(t0: float) -> tuple[str, float]:
    """(``t`` or ``(t - t0)``, the t0 that text evaluates to); large t0 written parsably."""
    if t0 == 0.0:
        return "t", 0.0
    mag = abs(t0)
    if mag <= EQ_MAX_LITERAL:
        text = f"{mag:.3f}"
        value = float(text)
    else:
        text = _parsable(mag, repr)  # repr: the shortest text that reads back as the same m
        value = float(text.split("*")[0])
        for _ in range(text.count("*10**")):
            value *= 10**_FACTOR_EXP  # as the parser evaluates m*10**8*...
    return (f"(t - {text})", value) if t0 > 0 else (f"(t + {text})", -value)


def _join(terms: list[tuple[float, str, int]], extent: float, span: float) -> str:
    """Sum of coef*basis terms (basis of polynomial order k), dropping those that move
    the point by less than 1e-7 of the extent over the time span."""
    parts: list[str] = []
    for coef, basis, order in terms:
        size = abs(coef) * max(span, 1.0) ** order
        if size < 1e-7 * max(extent, 1e-12):
            continue  # rounding noise of the fit, not motion
        mag = _num(abs(coef))
        body = basis if (basis and mag == "1") else (f"{mag}*{basis}" if basis else mag)
        if not parts:
            parts.append(f"-{body}" if coef < 0 else body)
        else:
            parts.append(f"{'-' if coef < 0 else '+'} {body}")
    return " ".join(parts) if parts else "0"


SHIFT_AFTER_SECONDS = 100.0  # beyond this, equations use (t - t0): t**2 of big t needs big numbers


def equations_from_fit(fit: MotionFit, t_max: float) -> tuple[str, str, str]:
    """Canonical equations in time t (seconds), one per axis.

    Polynomials are expanded in t; periodic parts are written as R*cos(ω*t + φ) per
    axis. When the window lies far from t = 0 (more than SHIFT_AFTER_SECONDS), ``t`` is
    replaced by ``(t - t0)`` with t0 near the window's middle, so no coefficient (and no
    rounding of ω times a large t) blows up. All parse under
    :func:`trajlab.equations.parse_equation`: numbers above its literal limit (t0 of a
    Unix timestamp, the speed of a fast small step) are written as ``m*10**8``.
    """
    ff = fit.fit
    c, w = ff.coefs, ff.omega
    t0 = 0.0 if abs(ff.tc) <= SHIFT_AFTER_SECONDS else round(ff.tc, 3)
    tv, t0 = _time_variable(t0)
    d = ff.tc - t0  # the fit's coefficients are in τ = t - tc = (t - t0) - d
    span = max(abs(t_max - t0), 1.0)
    out: list[str] = []
    for axis in range(3):
        terms: list[tuple[float, str, int]] = []
        if ff.family in ("linear", "parabolic"):
            a0, a1 = c[0, axis], c[1, axis]
            a2 = c[2, axis] if ff.family == "parabolic" else 0.0
            # expand a0 + a1 (u - d) + a2 (u - d)^2 in u = t - t0
            terms = [(a0 - a1 * d + a2 * d * d, "", 0), (a1 - 2 * a2 * d, tv, 1)]
            if ff.family == "parabolic":
                terms.append((a2, f"{tv}**2", 2))
        else:
            if ff.family == "circular":
                c0, drift, ca, sb = c[0, axis], 0.0, c[1, axis], c[2, axis]
            else:
                c0, drift, ca, sb = c[0, axis], c[1, axis], c[2, axis], c[3, axis]
            amp = math.hypot(ca, sb)
            # ca cos(wτ) + sb sin(wτ) = amp cos(wτ - atan2(sb, ca)), τ = u - d
            phase = math.remainder(-w * d - math.atan2(sb, ca), 2 * math.pi)
            terms = [(c0 - drift * d, "", 0), (drift, tv, 1)]
            if amp >= 1e-7 * max(fit.extent, 1e-12):
                ph = f" + {_num(phase)}" if phase >= 0 else f" - {_num(-phase)}"
                if abs(phase) < 1e-7:  # rounding noise of the fit
                    ph = ""
                terms.append((amp, f"cos({_num(w)}*{tv}{ph})", 0))
        out.append(_join(terms, fit.extent, span))
    return out[0], out[1], out[2]


def _vec(v: np.ndarray, digits: int = 2) -> str:
    return "(" + ", ".join(f"{x:.{digits}f}" for x in v) + ")"


# Camera coordinates of trajlab.data: x right, y up, z depth along the viewing direction.
_WORDS = (("right", "left"), ("up", "down"), ("away from the camera", "toward the camera"))


def _direction_words(v: np.ndarray) -> str:
    """Dominant direction of a vector in words (x right, y up, camera looking along +z)."""
    n = float(np.linalg.norm(v))
    if n == 0:
        return "no particular direction"
    u = v / n
    axis = int(np.argmax(np.abs(u)))
    positive = bool(u[axis] >= 0)
    word = _WORDS[axis][0 if positive else 1]
    return f"mostly {word} ({'+' if positive else '-'}{'xyz'[axis]}), unit direction {_vec(u)}"


def describe_fit(fit: MotionFit, trajectory: Trajectory) -> str:
    """Plain-language description built from the fitted numbers."""
    p = fit.params
    fam = fit.family
    if fam == "linear":
        v = np.asarray(p["velocity"])
        text = (
            f"Linear motion at a constant {p['speed']:.3g} units/s, {_direction_words(v)}, "
            f"passing {_vec(np.asarray(p['position_at_t0']))} at t = 0 s."
        )
    elif fam == "parabolic":
        a = np.asarray(p["acceleration"])
        text = (
            f"Parabolic (ballistic) motion: constant acceleration {p['acceleration_magnitude']:.3g} units/s² "
            f"{_direction_words(a)}; speed {p['speed_at_t0']:.3g} units/s at t = 0 s from "
            f"{_vec(np.asarray(p['position_at_t0']))}."
        )
        a_mag = float(p["acceleration_magnitude"])  # type: ignore[arg-type]
        if a_mag > 0:
            # The apex: where the velocity's component along the acceleration is zero.
            t_apex = -float(np.dot(np.asarray(p["velocity_at_t0"]), a)) / (a_mag * a_mag)
            apex = fit.fit.predict(np.array([t_apex]))[0]
            text += (
                f" Its apex (turning point against the acceleration) is at t = {t_apex:.3g} s, {_vec(apex)}."
            )
    elif fam == "circular":
        text = (
            f"Circular motion: radius {p['radius']:.3g} units, period {p['period']:.3g} s "
            f"({p['angular_speed']:.3g} rad/s, speed {p['speed']:.3g} units/s) around the centre "
            f"{_vec(np.asarray(p['centre']))}, counter-clockwise seen from the plane normal "
            f"{_vec(np.asarray(p['normal']))}."
        )
    else:
        text = (
            f"Helical motion: radius {p['radius']:.3g} units, period {p['period']:.3g} s "
            f"({p['angular_speed']:.3g} rad/s), advancing {p['axial_speed']:.3g} units/s along the axis "
            f"{_vec(np.asarray(p['axis']))} (pitch {p['pitch']:.3g} units per turn), overall speed "
            f"{p['speed']:.3g} units/s."
        )
    t_next = trajectory.next_time
    nxt = fit.fit.predict(np.array([t_next]))[0]
    text += f" Next, at t = {t_next:.3g} s, the fit puts it near {_vec(nxt)}."
    if trajectory.forecast.shape[0]:
        t_end = float(trajectory.forecast_times[-1])
        fit_end = fit.fit.predict(np.array([t_end]))[0]
        gap = float(np.linalg.norm(fit_end - trajectory.forecast[-1]))
        text += (
            f" The video model's forecast ends at {_vec(trajectory.forecast[-1])} (t = {t_end:.3g} s), "
            f"{gap:.3g} units from the fit's {_vec(fit_end)}."
        )
    rel = fit.rms_residual / fit.extent * 100 if fit.extent > 0 else 0.0
    text += f" The fit matches the observed points to {rel:.2g} % of their extent (RMS)."
    if trajectory.predicted_class and trajectory.predicted_class != fam:
        pc = trajectory.predicted_class
        text += f" The video model predicted {pc}, but the points fit {fam} motion better."
    return text


class AnalyticBackend:
    """Least-squares fitter behind the backend interface."""

    name = "analytic"
    kind = "analytic"
    model = ""
    endpoint = ""

    def configured(self) -> tuple[bool, str]:
        return True, "built in: least-squares fits of the four motion families"

    def fit(self, trajectory: Trajectory, should_stop: Callable[[], bool] | None = None) -> MotionFit:
        return fit_motion(
            trajectory.observed_times,
            trajectory.observed,
            trajectory.predicted_class,
            should_stop=should_stop,
        )

    def describe(
        self,
        trajectory: Trajectory,
        timeout_s: float = math.inf,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> Description:
        """The fit's equations and description; CallAbandoned once ``should_stop()`` is True."""
        fit = self.fit(trajectory, should_stop)
        t_max = float(
            max(
                trajectory.observed_times[-1],
                trajectory.forecast_times[-1] if trajectory.forecast_times.size else 0.0,
            )
        )
        eqs = equations_from_fit(fit, t_max)
        return Description(
            equations=eqs, description=describe_fit(fit, trajectory), described_class=fit.family
        )

"""The safe equation parser refuses code, and the scorer measures what a user would check."""

from __future__ import annotations

import gc
import math
import threading
import time

import numpy as np
import pytest
import sympy

from trajlab.equations import (
    ACCURATE_NRMSE,
    UnsafeEquation,
    parse_equation,
    score_equations,
    trajectory_extent,
)

GOOD = [
    ("1.5 + 2*cos(3.1*t + 0.2) - 4.9*t**2", lambda t: 1.5 + 2 * np.cos(3.1 * t + 0.2) - 4.9 * t**2),
    ("x(t) = 0.5*t - 1e-3", lambda t: 0.5 * t - 1e-3),
    ("z = sqrt(2)*sin(pi*t)/E", lambda t: math.sqrt(2) * np.sin(math.pi * t) / math.e),
    ("-t^2 + exp(-0.5*t)", lambda t: -(t**2) + np.exp(-0.5 * t)),
    ("3", lambda t: 3.0 + 0 * t),
    ("Abs(t - 1) + abs(-t)", lambda t: np.abs(t - 1) + np.abs(-t)),
    # What language models write: implicit products, typographic symbols, float exponents.
    ("x(t) = 2.5cos(1.7t + 0.3) - 2(t - 1)", lambda t: 2.5 * np.cos(1.7 * t + 0.3) - 2 * (t - 1)),
    (
        "2πt − 1e-3 × t + 2.5e-2sin(t)(t + 1)",
        lambda t: 2 * math.pi * t - 1e-3 * t + 2.5e-2 * np.sin(t) * (t + 1),
    ),
]


@pytest.mark.parametrize(("text", "fn"), GOOD)
def test_accepted_equations_evaluate_like_the_maths(text: str, fn) -> None:
    t = np.linspace(0.0, 2.5, 21)
    np.testing.assert_allclose(parse_equation(text).evaluate(t), fn(t), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("text", "fn"), GOOD)
def test_sympy_expression_agrees_with_the_numeric_evaluation(text: str, fn) -> None:
    expr = parse_equation(text).to_sympy()
    assert {s.name for s in expr.free_symbols} <= {"t"}
    t_sym = next(iter(expr.free_symbols)) if expr.free_symbols else sympy.Symbol("t")
    for tv in (0.0, 0.7, 2.0):
        assert float(expr.subs(t_sym, tv)) == pytest.approx(float(fn(np.array(tv))), rel=1e-9, abs=1e-12)


ATTACKS = [
    "__import__('os').system('echo pwned')",
    "().__class__.__bases__[0].__subclasses__()",
    "t.__class__",
    "t.real",
    "sin.__globals__",
    "lambda t: t",
    "(lambda: 1)()",
    "exec('import os')",
    "eval('1+1')",
    "compile('1', 'f', 'eval')",
    "open('/etc/passwd').read()",
    "import os",
    "os.system('ls')",
    "getattr(t, 'x')",
    "globals()",
    "Symbol('x')",
    "sympify('t')",
    "x",
    "sin(t).evalf()",
    "[t for t in (1, 2)]",
    "{'a': 1}",
    "t if t else 1",
    "t == 1",
    "t < 2",
    "t; import os",
    "t\nimport os",
    "t @ t",
    "t % 2",
    "t // 2",
    "~t",
    "not t",
    "t and 1",
    "sin(*t)",
    "sin(t, 2)",
    "sin(x=t)",
    "sin()",
    "f(t)",
    "'t'",
    "b'1'",
    "1j*t",
    "1_000*t",
    "9**9**9**9",
    "2**100",
    "t**t",
    "t**(1+1)",
    "((t**8)**8)**8",
    "10**1000",
    "1e400",
    "99999999999*t",
    "9" * 500,
    "(" * 60 + "t" + ")" * 60,
    "+".join(["t"] * 150),
    "",
    "   ",
    "ｔ",
    "t\x00",
    "${t}",
    "t # comment",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_code_and_oversized_input_is_refused(text: str) -> None:
    with pytest.raises(UnsafeEquation):
        parse_equation(text)


def test_parser_never_calls_sympy_eval_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    # sympy's own parsers run eval(); ours must work with them disabled.
    import sympy.parsing.sympy_parser as sp

    def boom(*a, **k):
        raise AssertionError("parse_expr/sympify must not be called on untrusted text")

    monkeypatch.setattr(sp, "parse_expr", boom)
    monkeypatch.setattr(sympy, "sympify", boom)
    monkeypatch.setattr(sympy, "lambdify", boom)
    eq = parse_equation("2*sin(3*t) + t**2")
    assert eq.evaluate(np.array([1.0]))[0] == pytest.approx(2 * math.sin(3) + 1)
    assert eq.to_sympy().has(sympy.sin)


def test_non_string_input_is_refused() -> None:
    with pytest.raises(UnsafeEquation):
        parse_equation(42)  # type: ignore[arg-type]


def _truth() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(20) / 8.0
    return t, np.c_[np.cos(2 * t), np.sin(2 * t), 5 + 0.3 * t]


def test_exact_equations_score_accurate_with_zero_error() -> None:
    t, p = _truth()
    s = score_equations(("cos(2*t)", "sin(2*t)", "5 + 0.3*t"), t, p)
    assert s.scored and s.parsed and s.accurate and s.normalized_rmse < 1e-12 and s.error == ""


def test_accuracy_threshold_is_five_percent_of_the_extent() -> None:
    t, p = _truth()
    ext = trajectory_extent(p)
    assert ext == pytest.approx(2.0, abs=0.01)  # the circle's diameter dominates the axes
    near = score_equations((f"cos(2*t) + {0.04 * ext}", "sin(2*t)", "5 + 0.3*t"), t, p)
    far = score_equations((f"cos(2*t) + {0.06 * ext}", "sin(2*t)", "5 + 0.3*t"), t, p)
    assert near.normalized_rmse == pytest.approx(0.04, rel=1e-6) and near.accurate
    assert far.normalized_rmse == pytest.approx(0.06, rel=1e-6) and not far.accurate
    assert ACCURATE_NRMSE == 0.05


def test_unparsable_equations_count_inaccurate_and_say_which_axis() -> None:
    t, p = _truth()
    s = score_equations(("cos(2*t)", "__import__('os')", "5"), t, p)
    assert s.scored and not s.parsed and not s.accurate and math.isinf(s.normalized_rmse)
    assert s.error.startswith("unparsable: y:")


def test_non_finite_values_count_inaccurate() -> None:
    t, p = _truth()
    s = score_equations(("exp(exp(exp(10*t)))", "sin(2*t)", "5"), t, p)
    assert s.parsed and not s.accurate and "non-finite" in s.error


def test_bad_truth_is_not_scored() -> None:
    t, p = _truth()
    assert not score_equations(("t", "t", "t"), t[:-1], p).scored
    assert not score_equations(("t", "t", "t"), t, np.ones_like(p)).scored


def test_parsing_on_many_threads_while_the_collector_switches_threads_never_raises() -> None:
    """Regression: the describer's gRPC threads answered ~1 call in 200 INTERNAL under load.

    CPython 3.11.7 keeps ast.parse's recursion counter in interpreter-global state
    (gh-106905); a garbage collection inside one thread's parse that lets another thread
    run made the first raise "SystemError: AST constructor recursion depth mismatch".
    Here every allocation may collect (threshold 1) and every collection yields the GIL,
    which without the parser's lock failed 29 runs in 30 on Python 3.11.7.
    """
    expr = "1.5*cos(2.0*t + 0.3) + 0.2*sin(3*t)**2 - (t - 1)*(t + 2)/(1 + t**2) + exp(-0.1*t)"
    errors: list[BaseException] = []
    stop = threading.Event()

    def yield_gil(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            time.sleep(1e-4)  # another parsing thread runs while this one is inside ast.parse

    def parse_many() -> None:
        try:
            for _ in range(400):
                if stop.is_set():
                    return
                parse_equation(expr)
        except Exception as exc:  # any exception is the failure reported below
            errors.append(exc)
            stop.set()

    threshold = gc.get_threshold()
    gc.callbacks.append(yield_gil)
    gc.set_threshold(1, 1, 1)
    try:
        threads = [threading.Thread(target=parse_many) for _ in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(yield_gil)
    assert not errors, errors[0]

"""Language-model output is hostile: property-based search for holes in the equation parser.

tests/unit/describer/test_equations.py holds the corpus of known attacks (code,
dunders, huge numbers and exponents). Here hypothesis builds text from the
parser's own alphabet and from tokens a model (or an attacker) would write, and
checks the invariants: anything is either refused with UnsafeEquation or accepted
as an expression that evaluates to an array of the right shape and turns into a
sympy expression in t alone; never another exception, never a name outside the
whitelist.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trajlab.equations import ALLOWED_FUNCTIONS, MAX_CHARS, UnsafeEquation, parse_equation, score_equations

TOKENS = [
    "t", "pi", "E", "π", "(", ")", "+", "-", "−", "*", "×", "/", "**", "^", " ", "0", "1", "2", "9", ".",
    "e", "1e9", "1e10", "9e99", "8", "0.5", "-8", "999999999", "x(t) =", "z =", "\n", "\t",
    *sorted(ALLOWED_FUNCTIONS), "__import__", "os", "system", "eval", "lambda", ":", ",", "[", "]", "'", "_",
    "__class__", ".real", "=", ";", "\x00", "\u2028", "\x1c", "٣", "ｔ", "𝑡",
]
_text = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=60).map("".join),
    st.text(alphabet="t0123456789.+-*/()^ epiEsinco", max_size=MAX_CHARS + 20),
    st.text(max_size=80),
)
_T = np.linspace(0.0, 2.5, 20)
FUZZ = settings(max_examples=1500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@FUZZ
@given(text=_text)
def test_any_text_is_refused_cleanly_or_is_a_safe_expression_in_t(text: str) -> None:
    try:
        eq = parse_equation(text)
    except UnsafeEquation:
        return
    values = eq.evaluate(_T)
    assert values.shape == _T.shape and values.dtype == np.float64
    assert "_" not in eq.text and "'" not in eq.text
    expr = eq.to_sympy()
    assert {s.name for s in expr.free_symbols} <= {"t"}


@settings(FUZZ, max_examples=300)
@given(x=_text, y=_text, z=_text)
def test_scoring_hostile_answers_never_raises(x: str, y: str, z: str) -> None:
    truth = np.stack([_T, _T**2, np.sin(_T)], axis=1)
    s = score_equations([x, y, z], _T, truth)
    assert s.scored
    assert s.accurate == (s.parsed and s.normalized_rmse <= 0.05)

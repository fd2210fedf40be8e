"""Safe parsing and scoring of trajectory equations x(t), y(t), z(t).

Equations come from language models, so they are untrusted text. sympy's
``parse_expr`` runs ``eval`` on (transformed) input, so it is never called on them.
Instead the text is checked character by character, parsed by Python's ``ast``
module (which only builds a tree and runs nothing), and every node is checked
against a whitelist: numbers, the symbol ``t``, ``pi``/``E``, ``+ - * / **``,
unary signs and calls of whitelisted functions by bare name. Attribute access,
subscripts, strings, lambdas, comprehensions, keywords, imports and dunders are
refused because no such node (or no ``_``, quote or bracket character) is allowed.
Sizes are bounded: text length, node count, nesting depth, literal magnitude, and
the product of the exponents along any path (so ``((9**9)**9)**9...`` is refused
before anything is computed).

The checked tree is then evaluated directly with numpy (no ``lambdify``, which
also uses ``exec``) and turned into a sympy expression on demand by building it
node by node. The scorer evaluates the three equations at the truth times and
reports the normalised RMSE (per-point Euclidean error, RMS over points, divided
by the trajectory's extent); "accurate" means at most 5 % of the extent.
"""

from __future__ import annotations

import ast
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CHARS = 400  # characters per equation; a fitted helix needs ~80
MAX_NODES = 200  # AST nodes per equation
MAX_DEPTH = 24  # AST nesting depth
MAX_LITERAL = 1e9  # largest |number| written in an equation
MAX_EXPONENT = 8.0  # largest |constant exponent| of one power
MAX_EXPONENT_PRODUCT = 64.0  # largest product of exponents along a path (bounds t**k growth)
ACCURATE_NRMSE = 0.05  # "accurate" when RMSE <= 5 % of the extent

# One ast.parse at a time in the process. CPython 3.11.7 (the dev venv) and Debian's
# 3.11.2 (the images on the local base) keep the AST constructor's recursion counter in
# interpreter-global state (gh-106905, fixed upstream by python/cpython#113035, Dec 2023):
# a garbage collection inside ast.parse can run finalizers that switch threads, and a
# second thread's ast.parse then corrupts the first one's count ("SystemError: AST
# constructor recursion depth mismatch"). The describer scores equations on many gRPC
# threads at once, and that answered ~1 call in 200 INTERNAL under load
# (tests/unit/describer/test_equations.py reproduces it). Reentrant: a finalizer run by
# the collector inside a parse may parse too, in the same thread.
_AST_LOCK = threading.RLock()

# Allowed function names -> numpy implementation (evaluation) and sympy name (expression).
_NP_FUNCS: dict[str, Callable[[Any], Any]] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "Abs": np.abs,
    "abs": np.abs,
}
_SYMPY_FUNC_NAMES: dict[str, str] = {k: k for k in _NP_FUNCS} | {"abs": "Abs"}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "E": math.e}
ALLOWED_FUNCTIONS: frozenset[str] = frozenset(_NP_FUNCS)
ALLOWED_NAMES: frozenset[str] = frozenset({"t", *_CONSTANTS})

# Letters, digits, whitespace, '.', operators and parentheses. No '_' (dunders),
# quotes, brackets, braces, ':', ';', '=', '@', '\\', ',' (no multi-arg calls).
_ALLOWED_CHARS = re.compile(r"^[A-Za-z0-9\s.+\-*/()^]*$")
# A leading "x(t) =" or "z =" is tolerated: models often write the left-hand side.
_LHS = re.compile(r"^\s*[xyzXYZ]\s*(\(\s*t\s*\))?\s*=\s*")
# Typographic symbols models like to write, mapped to their ASCII operators.
_TYPOGRAPHY = str.maketrans({"π": "(pi)", "−": "-", "×": "*", "·": "*", "⋅": "*"})
# Implicit multiplication, as in "2t", "1.5cos(t)", "2(t + 1)", "(t + 1)(t - 1)", "2 pi":
# a number or ")" followed by a letter or "(" gets a "*". A float exponent ("1e-3",
# "2E5") is left alone. Only inserts "*": it cannot make anything the checker refuses pass.
_IMPLICIT = re.compile(r"(\d\.?|\))\s*(?=[A-Za-z(])(?![eE][+-]?\d)")

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.Pow: lambda a, b: a**b,
}


class UnsafeEquation(ValueError):
    """The text is not an equation the safe parser accepts; the message says why."""


@dataclass(frozen=True)
class Equation:
    """A checked equation in the symbol t (seconds)."""

    text: str  # the normalised source text
    tree: ast.expr  # the checked AST (whitelisted nodes only)

    def evaluate(self, times: np.ndarray | Sequence[float]) -> np.ndarray:
        """Values at ``times`` (seconds) as float64; non-finite where the maths overflows."""
        t = np.asarray(times, dtype=np.float64)
        with np.errstate(all="ignore"):
            out = _eval(self.tree, t)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), t.shape).copy()

    def to_sympy(self) -> Any:
        """The equation as a sympy expression (built node by node, no eval)."""
        import sympy

        return _to_sympy(self.tree, sympy)


def parse_equation(text: str) -> Equation:
    """Check ``text`` and return an :class:`Equation`; raise :class:`UnsafeEquation` if refused."""
    if not isinstance(text, str):
        raise UnsafeEquation(f"equation must be a string, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise UnsafeEquation(f"equation is {len(text)} characters long; the limit is {MAX_CHARS}")
    src = _LHS.sub("", text.strip().translate(_TYPOGRAPHY), count=1)
    if not src:
        raise UnsafeEquation("equation is empty")
    if not _ALLOWED_CHARS.match(src):
        bad = sorted({c for c in src if not _ALLOWED_CHARS.match(c)})
        raise UnsafeEquation(f"equation contains characters that are not allowed: {''.join(bad)!r}")
    # '^' is the power operator in most people's notation (and in sympy's convert_xor).
    src = _IMPLICIT.sub(r"\1*", src.replace("^", "**"))
    depth = 0
    for c in src:
        depth += (c == "(") - (c == ")")
        if depth > MAX_DEPTH:
            raise UnsafeEquation(f"equation nests parentheses deeper than {MAX_DEPTH}")
    try:
        with _AST_LOCK:
            tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise UnsafeEquation(f"equation is not a valid expression: {exc.__class__.__name__}") from None
    checker = _Checker()
    checker.check(tree.body, depth=0, exponent_product=1.0)
    return Equation(text=src, tree=tree.body)


def parse_equations(texts: Sequence[str]) -> tuple[Equation, Equation, Equation]:
    """Parse x, y, z equations; the error names the axis that failed."""
    if len(texts) != 3:
        raise UnsafeEquation(f"need 3 equations (x, y, z), got {len(texts)}")
    out = []
    for axis, text in zip("xyz", texts, strict=True):
        try:
            out.append(parse_equation(text))
        except UnsafeEquation as exc:
            raise UnsafeEquation(f"{axis}: {exc}") from None
    return out[0], out[1], out[2]


class _Checker:
    def __init__(self) -> None:
        self.nodes = 0

    def check(self, node: ast.AST, depth: int, exponent_product: float) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise UnsafeEquation(f"equation has more than {MAX_NODES} terms")
        if depth > MAX_DEPTH:
            raise UnsafeEquation(f"equation nests deeper than {MAX_DEPTH}")
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise UnsafeEquation(f"only real numbers are allowed, got {type(v).__name__}")
            # Compare ints before float(): a 400-digit literal would overflow the conversion.
            if abs(v) > MAX_LITERAL or not math.isfinite(float(v)):
                raise UnsafeEquation(f"number {v!r} is too large (limit {MAX_LITERAL:g})")
            return
        if isinstance(node, ast.Name):
            if node.id not in ALLOWED_NAMES:
                raise UnsafeEquation(f"unknown name {node.id!r}; allowed: t, pi, E and function calls")
            return
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.UAdd | ast.USub):
                raise UnsafeEquation(f"operator {type(node.op).__name__} is not allowed")
            self.check(node.operand, depth + 1, exponent_product)
            return
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _BINOPS:
                raise UnsafeEquation(f"operator {type(node.op).__name__} is not allowed")
            if isinstance(node.op, ast.Pow):
                exponent = _constant_value(node.right)
                if exponent is None:
                    raise UnsafeEquation("exponents must be plain numbers (use exp() for e**x)")
                if abs(exponent) > MAX_EXPONENT:
                    raise UnsafeEquation(f"exponent {exponent:g} is too large (limit {MAX_EXPONENT:g})")
                product = exponent_product * max(1.0, abs(exponent))
                if product > MAX_EXPONENT_PRODUCT:
                    raise UnsafeEquation("nested powers grow too fast")
                self.check(node.left, depth + 1, product)
                self.check(node.right, depth + 1, exponent_product)
                return
            self.check(node.left, depth + 1, exponent_product)
            self.check(node.right, depth + 1, exponent_product)
            return
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in ALLOWED_FUNCTIONS:
                raise UnsafeEquation(
                    "only calls of whitelisted functions by name are allowed: "
                    + ", ".join(sorted(ALLOWED_FUNCTIONS))
                )
            if node.keywords or len(node.args) != 1:
                raise UnsafeEquation(f"{node.func.id}() takes exactly one argument")
            if isinstance(node.args[0], ast.Starred):
                raise UnsafeEquation("starred arguments are not allowed")
            self.check(node.args[0], depth + 1, exponent_product)
            return
        raise UnsafeEquation(f"{type(node).__name__} is not allowed in an equation")


def _constant_value(node: ast.AST) -> float | None:
    """The value of a numeric literal, optionally signed; None for anything else."""
    sign = 1.0
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        if isinstance(node.op, ast.USub):
            sign = -sign
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return sign * float(node.value)
    return None


def _eval(node: ast.AST, t: np.ndarray) -> Any:
    # Only nodes the checker accepted reach here.
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return t if node.id == "t" else _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, t)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a = np.asarray(_eval(node.left, t), dtype=np.float64)
        b = np.asarray(_eval(node.right, t), dtype=np.float64)
        return _BINOPS[type(node.op)](a, b)
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return _NP_FUNCS[node.func.id](np.asarray(_eval(node.args[0], t), dtype=np.float64))
    raise UnsafeEquation(f"{type(node).__name__} is not allowed")  # pragma: no cover


def _to_sympy(node: ast.AST, sympy: Any) -> Any:
    if isinstance(node, ast.Constant):
        v = node.value
        return sympy.Integer(v) if isinstance(v, int) else sympy.Float(repr(v))
    if isinstance(node, ast.Name):
        return {"t": sympy.Symbol("t", real=True), "pi": sympy.pi, "E": sympy.E}[node.id]
    if isinstance(node, ast.UnaryOp):
        v = _to_sympy(node.operand, sympy)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_to_sympy(node.left, sympy), _to_sympy(node.right, sympy))
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return getattr(sympy, _SYMPY_FUNC_NAMES[node.func.id])(_to_sympy(node.args[0], sympy))
    raise UnsafeEquation(f"{type(node).__name__} is not allowed")  # pragma: no cover


@dataclass(frozen=True)
class EquationScore:
    """How well three equations reproduce true positions."""

    scored: bool  # scoring ran (truth was given and valid)
    parsed: bool  # all three equations passed the safe parser
    normalized_rmse: float  # RMS Euclidean error / extent; inf when unparsable or non-finite
    accurate: bool  # normalized_rmse <= ACCURATE_NRMSE
    error: str = ""  # why parsing or scoring failed


def trajectory_extent(positions: np.ndarray) -> float:
    """max over axes of (max - min) of positions (N, 3), world units."""
    p = np.asarray(positions, dtype=np.float64)
    return float(np.max(p.max(axis=0) - p.min(axis=0)))


def score_equations(
    equations: Sequence[str],
    times: np.ndarray | Sequence[float],
    truth: np.ndarray,
    *,
    extent: float | None = None,
) -> EquationScore:
    """Score x, y, z equations against true positions ``truth`` (N, 3) at ``times`` (N,) seconds.

    ``extent`` defaults to the truth's own extent (max over axes of max - min).
    Unparsable equations, or values that are not finite, count as inaccurate and
    say so in ``error``.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    p = np.asarray(truth, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] != t.shape[0] or t.shape[0] == 0:
        return EquationScore(
            False,
            False,
            math.inf,
            False,
            f"truth must be (N, 3) with N = len(times) > 0, got {p.shape} and {t.shape}",
        )
    ext = trajectory_extent(p) if extent is None else float(extent)
    if not math.isfinite(ext) or ext <= 0.0:
        return EquationScore(False, False, math.inf, False, f"extent must be > 0, got {ext}")
    try:
        eqs = parse_equations(equations)
    except UnsafeEquation as exc:
        return EquationScore(True, False, math.inf, False, f"unparsable: {exc}")
    pred = np.stack([e.evaluate(t) for e in eqs], axis=1)
    if not np.all(np.isfinite(pred)):
        return EquationScore(
            True, True, math.inf, False, "equations give non-finite values at the truth times"
        )
    rmse = float(np.sqrt(np.mean(np.sum((pred - p) ** 2, axis=1))))
    nrmse = rmse / ext
    return EquationScore(True, True, nrmse, nrmse <= ACCURATE_NRMSE, "")

"""VNN-LIB 1.0 reader: an input box and an unsafe output set, from the SMT-LIB subset VNN-COMP uses.

Accepted (``;`` starts a comment; a file starting with gzip's magic bytes is decompressed):

- ``(declare-const X_i Real)`` and ``(declare-const Y_j Real)``: inputs ``X_0 .. X_{n-1}`` and outputs
  ``Y_0 .. Y_{m-1}``, each index exactly once, flattened in row-major order of the model's input / output
  (batch dim left out);
- ``(assert F)`` over inputs only: every atom of ``F`` a bound on one input (``(<= X_0 0.5)``,
  ``(>= X_0 -0.5)``, ``(<= 0.1 X_3)``, ...), joined by ``and``; the box is the intersection of all bounds and
  every input needs a lower and an upper bound;
- ``(assert F)`` over outputs only: ``F`` built from ``and`` / ``or`` / ``<= >= < > =`` over linear terms
  (numbers, ``Y_j``, ``(+ ..)``, ``(- ..)``, ``(* c ..)``, ``(/ .. c)``), e.g. VNN-COMP's
  ``(assert (or (and (>= Y_0 1) (<= Y_1 0)) (and ...)))``.

Semantics (VNN-LIB's): the asserts describe a counterexample. The property holds (``unsat``) iff no input
in the box gives outputs in the unsafe set, the conjunction of all output asserts, which is returned in
disjunctive normal form: ``unsafe = OR_k { y : A_k y <= b_k }``. Strict comparisons are read as their
closure (``<`` as ``<=``), which only enlarges the unsafe set: sound for proofs; a counterexample on the
boundary must be rechecked. No output assert means every output is unsafe (one disjunct with no rows).

Not accepted (a `VnnlibError` names the line): disjunctions over inputs, constraints mixing inputs and
outputs, linear input constraints other than bounds, an empty box (lower > upper).
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gridverify.specs.sexpr import Atom, SExpr, SList, VnnlibError, parse_sexprs

__all__ = ["Disjunct", "VnnlibError", "VnnlibSpec", "parse_vnnlib", "read_vnnlib"]

_VAR = re.compile(r"([XY])_(\d+)\Z")
_MAX_DISJUNCTS = 100_000
_IGNORED = frozenset({"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"})


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Disjunct:
    """One polytope of the unsafe set: ``{y : a @ y <= b}``; ``a`` is ``(k, m)``, ``b`` is ``(k,)``."""

    a: np.ndarray
    b: np.ndarray

    def contains(self, y: np.ndarray) -> np.ndarray:
        """Which rows of ``y`` ``(N, m)`` lie in the polytope (boolean ``(N,)``)."""
        return np.all(np.atleast_2d(y) @ self.a.T <= self.b, axis=1)


@dataclass(frozen=True, eq=False)
class VnnlibSpec:
    """Input box ``input_lower <= x <= input_upper`` (each ``(n,)``) and unsafe set ``OR_k {A_k y <= b_k}``
    over ``n_outputs`` outputs. The property holds iff no x in the box maps into the unsafe set."""

    input_lower: np.ndarray
    input_upper: np.ndarray
    disjuncts: tuple[Disjunct, ...]
    n_outputs: int

    @property
    def n_inputs(self) -> int:
        return int(self.input_lower.shape[0])

    def in_box(self, x: np.ndarray) -> np.ndarray:
        """Which rows of ``x`` ``(N, n)`` lie in the input box (boolean ``(N,)``)."""
        x = np.atleast_2d(x)
        return np.all((x >= self.input_lower) & (x <= self.input_upper), axis=1)

    def is_unsafe(self, y: np.ndarray) -> np.ndarray:
        """Which rows of ``y`` ``(N, m)`` lie in the unsafe set (boolean ``(N,)``)."""
        y = np.atleast_2d(y)
        hits = [d.contains(y) for d in self.disjuncts]
        return np.any(hits, axis=0) if hits else np.zeros(y.shape[0], dtype=bool)

    def check_sizes(self, n_inputs: int, n_outputs: int) -> None:
        """`VnnlibError` unless the spec declares exactly this many inputs and outputs."""
        if (self.n_inputs, self.n_outputs) != (n_inputs, n_outputs):
            raise VnnlibError(
                f"the spec declares {self.n_inputs} inputs and {self.n_outputs} outputs, "
                f"the model has {n_inputs} inputs and {n_outputs} outputs"
            )


# -- linear terms and formulas ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Linear:
    """``sum coeffs[v] * v + const``."""

    coeffs: tuple[tuple[str, float], ...]
    const: float

    def scaled(self, c: float) -> _Linear:
        return _Linear(tuple((v, c * k) for v, k in self.coeffs), c * self.const)

    def plus(self, other: _Linear) -> _Linear:
        return _Linear(self.coeffs + other.coeffs, self.const + other.const)


Comparison = tuple[_Linear, int]  # (expr, line): expr <= 0
Conjunction = tuple[Comparison, ...]


def _number(atom: Atom, source: str) -> float:
    try:
        value = float(atom.text)
    except ValueError:
        message = f"{atom.text!r} is neither a declared variable nor a number"
        raise VnnlibError(f"{source}:{atom.line}: {message}") from None
    if math.isnan(value):
        raise VnnlibError(f"{source}:{atom.line}: NaN in a constraint")
    return value


class _Reader:
    """Turns top-level commands into declarations, input bounds and output formulas."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.declared: dict[str, int] = {}  # name -> line
        self.bounds: dict[str, list[tuple[str, float, int]]] = {}  # name -> [(<= or >=, value, line)]
        self.outputs: list[list[Conjunction]] = []  # conjunction of DNFs

    def fail(self, line: int, message: str) -> VnnlibError:
        return VnnlibError(f"{self.source}:{line}: {message}")

    def command(self, expr: SExpr) -> None:
        head = (
            expr.items[0].text
            if isinstance(expr, SList) and expr.items and isinstance(expr.items[0], Atom)
            else None
        )
        if head == "declare-const":
            self.declare(expr)
        elif head == "assert" and len(expr.items) == 2:
            self.assertion(self.formula(expr.items[1]), expr.line)
        elif head not in _IGNORED:
            raise self.fail(expr.line, f"expected (declare-const ..) or (assert ..), got {_show(expr)}")

    def declare(self, expr: SList) -> None:
        parts = [a.text if isinstance(a, Atom) else None for a in expr.items[1:]]
        if len(parts) != 2 or parts[1] != "Real" or parts[0] is None or not _VAR.match(parts[0]):
            raise self.fail(
                expr.line, f"expected (declare-const X_i Real) or (declare-const Y_j Real), got {_show(expr)}"
            )
        if parts[0] in self.declared:
            raise self.fail(expr.line, f"{parts[0]} declared again (first on line {self.declared[parts[0]]})")
        self.declared[parts[0]] = expr.line

    def term(self, expr: SExpr) -> _Linear:
        if isinstance(expr, Atom):
            if _VAR.match(expr.text):
                if expr.text not in self.declared:
                    raise self.fail(expr.line, f"{expr.text} is used but never declared")
                return _Linear(((expr.text, 1.0),), 0.0)
            return _Linear((), _number(expr, self.source))
        head, args = self.head(expr)
        terms = [self.term(a) for a in args]
        if head == "+" and terms:
            return _sum(terms)
        if head == "-" and terms:
            return terms[0].scaled(-1.0) if len(terms) == 1 else terms[0].plus(_sum(terms[1:]).scaled(-1.0))
        if head == "*" and terms:
            return self.product(terms, expr.line)
        if head == "/" and len(terms) == 2 and not terms[1].coeffs and terms[1].const != 0:
            return terms[0].scaled(1.0 / terms[1].const)
        raise self.fail(expr.line, f"expected a linear term, got {_show(expr)}")

    def product(self, terms: list[_Linear], line: int) -> _Linear:
        varying = [t for t in terms if t.coeffs]
        if len(varying) > 1:
            raise self.fail(line, "a product of variables is not linear")
        factor = math.prod(t.const for t in terms if not t.coeffs)
        return (varying[0] if varying else _Linear((), 1.0)).scaled(factor)

    def head(self, expr: SList) -> tuple[str, Sequence[SExpr]]:
        if not expr.items or not isinstance(expr.items[0], Atom):
            raise self.fail(expr.line, f"expected an operator, got {_show(expr)}")
        return expr.items[0].text, expr.items[1:]

    def formula(self, expr: SExpr) -> list[Conjunction]:
        """Disjunctive normal form: a list of conjunctions of ``expr <= 0``."""
        if isinstance(expr, Atom):
            raise self.fail(expr.line, f"expected a formula, got {expr.text!r}")
        head, args = self.head(expr)
        if head == "and":
            return self.conjoin([self.formula(a) for a in args], expr.line)
        if head == "or":
            return [c for a in args for c in self.formula(a)]
        if head in ("<=", ">=", "<", ">", "=") and len(args) >= 2:
            return [self.comparisons(head, [self.term(a) for a in args], expr.line)]
        raise self.fail(expr.line, f"expected (and ..), (or ..) or a comparison, got {_show(expr)}")

    def comparisons(self, head: str, terms: list[_Linear], line: int) -> Conjunction:
        pairs = list(itertools.pairwise(terms))
        less = [lhs.plus(rhs.scaled(-1.0)) for lhs, rhs in pairs]
        if head in (">=", ">"):
            return tuple((e.scaled(-1.0), line) for e in less)
        if head == "=":
            return tuple((e.scaled(s), line) for e in less for s in (1.0, -1.0))
        return tuple((e, line) for e in less)

    def conjoin(self, dnfs: list[list[Conjunction]], line: int) -> list[Conjunction]:
        size = math.prod(len(d) for d in dnfs)
        if size > _MAX_DISJUNCTS:
            raise self.fail(line, f"the conjunction expands to {size} disjuncts (limit {_MAX_DISJUNCTS})")
        result: list[Conjunction] = [()]
        for dnf in dnfs:
            result = [c + d for c in result for d in dnf]
        return result

    def assertion(self, dnf: list[Conjunction], line: int) -> None:
        names = {v for conj in dnf for expr, _ in conj for v, _ in expr.coeffs}
        kinds = {n[0] for n in names}
        if kinds == {"X"}:
            if len(dnf) != 1:
                raise self.fail(line, "a disjunction over inputs is not supported (one input box per file)")
            for expr, at in dnf[0]:
                self.bound(expr, at)
        elif kinds == {"X", "Y"}:
            raise self.fail(line, "a constraint mixing inputs X and outputs Y is not supported")
        else:
            self.outputs.append(dnf)

    def bound(self, expr: _Linear, line: int) -> None:
        """``c * X_i + d <= 0``: an upper bound ``-d/c`` if c > 0, a lower bound if c < 0."""
        coeffs: dict[str, float] = {}
        for v, k in expr.coeffs:
            coeffs[v] = coeffs.get(v, 0.0) + k
        nonzero = {v: k for v, k in coeffs.items() if k != 0}
        if len(nonzero) != 1:
            raise self.fail(
                line, "an input constraint must bound one input (linear input constraints are not supported)"
            )
        ((name, c),) = nonzero.items()
        self.bounds.setdefault(name, []).append(("<=" if c > 0 else ">=", -expr.const / c, line))

    def spec(self) -> VnnlibSpec:
        n_in, n_out = self.count("X"), self.count("Y")
        lower, upper = np.full(n_in, -np.inf), np.full(n_in, np.inf)
        for i in range(n_in):
            lower[i], upper[i] = self.box_entry(f"X_{i}")
        dnf = self.conjoin(self.outputs, 0) if self.outputs else [()]
        return VnnlibSpec(_frozen(lower), _frozen(upper), tuple(_disjunct(c, n_out) for c in dnf), n_out)

    def count(self, kind: str) -> int:
        indices = sorted(int(_VAR.match(n).group(2)) for n in self.declared if n[0] == kind)  # type: ignore[union-attr]
        missing = sorted(set(range(len(indices))) - set(indices))
        if missing:
            raise VnnlibError(
                f"{self.source}: {kind}_{missing[0]} is not declared, but {kind}_{indices[-1]} is"
            )
        return len(indices)

    def box_entry(self, name: str) -> tuple[float, float]:
        found = self.bounds.get(name, [])
        lows = [(v, at) for op, v, at in found if op == ">="]
        ups = [(v, at) for op, v, at in found if op == "<="]
        if not lows or not ups:
            side = "lower" if not lows else "upper"
            raise self.fail(self.declared[name], f"input {name} has no {side} bound")
        (lo, lo_at), (up, up_at) = max(lows), min(ups)
        if lo > up:
            raise self.fail(
                max(lo_at, up_at),
                f"the input box is empty: {name} >= {lo!r} (line {lo_at}) "
                f"and {name} <= {up!r} (line {up_at})",
            )
        return lo, up


def _sum(terms: Sequence[_Linear]) -> _Linear:
    return _Linear(tuple(p for t in terms for p in t.coeffs), math.fsum(t.const for t in terms))


def _show(expr: SExpr, limit: int = 60) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _disjunct(conj: Conjunction, n_out: int) -> Disjunct:
    a, b = np.zeros((len(conj), n_out)), np.zeros(len(conj))
    for row, (expr, _) in enumerate(conj):
        for name, k in expr.coeffs:
            a[row, int(name[2:])] += k
        b[row] = -expr.const
    return Disjunct(_frozen(a), _frozen(b))


def parse_vnnlib(text: str, source: str = "<vnnlib>") -> VnnlibSpec:
    """The spec written in ``text``; errors name ``source`` and the line."""
    reader = _Reader(source)
    for expr in parse_sexprs(text, source):
        reader.command(expr)
    return reader.spec()


def read_vnnlib(path: str | Path) -> VnnlibSpec:
    """Read a ``.vnnlib`` file, gzip-compressed (``.vnnlib.gz``) or not."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise VnnlibError(f"{path}: corrupt gzip data ({err})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VnnlibError(f"{path}: not a text file ({err})") from err
    return parse_vnnlib(text, str(path))

"""Sympy front end: `from_sympy` compiles many scalar sympy expressions into one small, vectorised `Graph`.

How it vectorises. Every distinct subexpression is a *row* of a *group*, and the graph computes a whole
group with a few vector nodes:

- a symbol of input ``v`` is a row of the group ``v``: the input vector itself, no node;
- ``f(a_1, ..., a_k)``: a registered elementwise op, ``Pow`` with an integer or half-integer exponent, or a
  product ``a_1 * ... * a_k``. Its *template* is the head plus the groups of its arguments (product
  factors sorted by height and group), so all rows of one template gather their arguments from the same
  groups: one ``gather`` per argument slot, then one op (a product: a chain of ``mul``, leaves first);
- a sum ``c_0 + sum_k c_k t_k`` of any number of terms, and a scaled product ``c * a_1 * ... * a_k``: all
  of one height (longest path down to a symbol) are one group, computed by one sparse ``linear`` over the
  concatenated groups of their terms. Numeric factors become coefficients and repeated terms add up, so
  ``p_balance[bus i] = pg_i - sum_b (g_b vm_i^2 + ...)`` is a row of a sparse incidence-like matrix.

So the node count depends on the set of templates, not on how many expressions share them: the AC
power-flow equations of 14 and of 1354 buses compile to graphs of about the same size. A repeated
subexpression is one row (sympy's hashing plus a row table), a repeated node one node (the builder interns
them). Numbers and ``params`` (symbols bound to constants) fold into coefficients, biases and constants;
sub-expressions of constants only are evaluated. Rewrites come from `GraphBuilder`: ``x**2 -> square``,
``x**-n -> reciprocal(x)**n``; sympy writes ``x/y`` as ``x * y**-1``, a product with a reciprocal.

Lookup: a sympy head (``type(expr).__name__``) maps to the op that lists it in ``sympy_heads``
(`sympy_table`, derived from `REGISTRY`): ``Add``, ``Mul`` and ``Pow`` are the heads of ``add``, ``mul``
and ``power``, and the op with head ``sqrt`` serves ``Pow`` with exponent k/2. Everything unsupported
(heads, symbols that are no input or param, non-constant exponents) is collected and raised at once as
`UnsupportedSympyError`, each with the expression and the output row where it was met.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import sympy
import torch

from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.graph import Graph
from gridverify.ops import REGISTRY

__all__ = ["UnsupportedSympyError", "from_sympy", "sympy_table"]

Value = int | float  # a row id (int) or a folded constant (float); constants are always float


class UnsupportedSympyError(ValueError):
    """Sympy constructs the front end cannot compile, each as ``(what, expression, output row)``."""

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(f"{what} in {expr} (output {where})" for what, expr, where in self.problems)
        super().__init__(f"unsupported sympy expressions ({len(self.problems)}): {listed}")


def sympy_table() -> Mapping[str, str]:
    """Sympy head name -> op name, from each registered op's ``sympy_heads``."""
    return MappingProxyType({head: op.name for op in REGISTRY.values() for head in op.sympy_heads})


def from_sympy(
    outputs: Mapping[str, Sequence[Any]],
    inputs: Mapping[str, Sequence[sympy.Symbol]],
    params: Mapping[sympy.Symbol, float] | None = None,
) -> Graph:
    """Compile ``{output name: [scalar expressions]}`` into a graph with one vector output per name.

    ``inputs`` names the graph inputs, each a vector ``(n,)`` whose entry ``i`` is the symbol
    ``inputs[name][i]``; ``params`` binds other symbols to constants. Output ``name`` has shape
    ``(len(outputs[name]),)``.
    """
    lowering = _Lowering(inputs, params or {})
    lowered = {name: lowering.lower_output(name, exprs) for name, exprs in outputs.items()}
    if lowering.problems:
        raise UnsupportedSympyError(_unique(lowering.problems))
    b = GraphBuilder()
    groups = lowering.compile(b, {name: b.input(name, (len(s),)) for name, s in inputs.items()})
    return b.build({name: groups.assemble(b, values) for name, values in lowered.items()})


def _unique(problems: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    for p in problems:
        seen.setdefault(p[:2], p)
    return list(seen.values())


@dataclass(frozen=True)
class _Template:
    """What all rows of a group share: ``kind`` (input/sum/product/op/power), ``name`` (input or op name),
    the groups of the argument slots (none for sums), the height, and ``param`` (power: the exponent)."""

    kind: str
    name: str
    args: tuple[int, ...]
    height: int
    param: Any = None


@dataclass(frozen=True)
class _Row:
    """One distinct subexpression: its group, argument rows, a sum's coefficients (one per term) and bias,
    and a symbol's index in its input vector."""

    group: int
    args: tuple[int, ...] = ()
    coeffs: tuple[float, ...] = ()
    bias: float = 0.0
    leaf: int = -1


@dataclass
class _Lowering:
    """Sympy expressions -> rows and groups (templates). Mutable while lowering; see the module docstring."""

    inputs: Mapping[str, Sequence[sympy.Symbol]]
    params: Mapping[sympy.Symbol, float]
    templates: list[_Template] = field(default_factory=list)
    rows: list[_Row] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    _template_ids: dict[_Template, int] = field(default_factory=dict)
    _row_ids: dict[_Row, int] = field(default_factory=dict)
    _memo: dict[Any, Value] = field(default_factory=dict)
    _symbols: dict[sympy.Symbol, tuple[str, int]] = field(default_factory=dict)
    _heads: Mapping[str, str] = field(default_factory=sympy_table)
    _where: str = ""

    def __post_init__(self) -> None:
        for name, symbols in self.inputs.items():
            for i, s in enumerate(symbols):
                if s in self._symbols:
                    raise ValueError(f"symbol {s} is entry {self._symbols[s]} and ({name!r}, {i})")
                self._symbols[s] = (name, i)

    # -- interning ----------------------------------------------------------------------------------
    def _group(self, template: _Template) -> int:
        if template not in self._template_ids:
            self._template_ids[template] = len(self.templates)
            self.templates.append(template)
        return self._template_ids[template]

    def _row(self, row: _Row) -> int:
        if row not in self._row_ids:
            self._row_ids[row] = len(self.rows)
            self.rows.append(row)
        return self._row_ids[row]

    def _height(self, rows: Sequence[int]) -> int:
        return 1 + max(self.templates[self.rows[r].group].height for r in rows)

    def _problem(self, what: str, expr: Any) -> float:
        self.problems.append((what, str(expr)[:120], self._where))
        return float("nan")

    # -- lowering -----------------------------------------------------------------------------------
    def lower_output(self, name: str, exprs: Sequence[Any]) -> list[Value]:
        values = []
        for i, e in enumerate(exprs):
            self._where = f"{name!r}[{i}]"
            values.append(self.lower(sympy.sympify(e)))
        return values

    def lower(self, expr: Any) -> Value:
        if expr.is_Number:  # cheaper than hashing it
            return self._number(expr)
        if expr not in self._memo:
            self._memo[expr] = self._lower(expr)
        return self._memo[expr]

    def _lower(self, expr: Any) -> Value:
        if expr.is_Symbol:
            return self._symbol(expr)
        if expr.is_Number or expr.is_NumberSymbol:
            return self._number(expr)
        op = self._heads.get(type(expr).__name__)
        if op is None:
            if not expr.free_symbols:  # e.g. sec(2): sympy evaluates it
                return self._number(expr)
            for arg in expr.args:
                self.lower(arg)  # report nested problems too
            return self._problem(f"head {type(expr).__name__!r}", expr)
        if op == "add":
            return self._sum(expr)
        if op == "mul":
            coef, factors = self._factors(expr)
            return self._linear({self._product(factors)}, coef) if factors else coef
        if op == "power":
            return self._power(expr)
        return self._elementwise(op, expr)

    def _symbol(self, s: sympy.Symbol) -> Value:
        if s in self._symbols:
            name, i = self._symbols[s]
            return self._row(_Row(self._group(_Template("input", name, (), 0)), leaf=i))
        if s in self.params:
            return float(self.params[s])
        return self._problem(f"symbol {s.name!r} is neither an input nor a param", s)

    def _number(self, expr: Any) -> float:
        try:
            return float(expr)
        except TypeError:
            return self._problem("a non-real constant", expr)

    def _factors(self, expr: Any) -> tuple[float, list[int]]:
        """``expr = coef * prod(rows)``: a product's numeric part and its factor rows."""
        args = expr.args if self._heads.get(type(expr).__name__) == "mul" else (expr,)
        coef, rows = 1.0, []
        for arg in args:
            v = self.lower(arg)
            if isinstance(v, float):
                coef *= v
            else:
                rows.append(v)
        return coef, rows

    def _product(self, factors: list[int]) -> int:
        """The row of ``prod(factors)``; slots sorted by (height, group), so leaves multiply first."""
        if len(factors) == 1:
            return factors[0]
        factors = sorted(factors, key=lambda r: (self._height([r]), self.rows[r].group))
        slots = tuple(self.rows[r].group for r in factors)
        template = _Template("product", "mul", slots, self._height(factors))
        return self._row(_Row(self._group(template), tuple(factors)))

    def _sum(self, expr: Any) -> Value:
        terms: dict[int, float] = {}
        bias = 0.0
        for arg in expr.args:
            coef, factors = self._factors(arg)
            if not factors:
                bias += coef
                continue
            term = self._product(factors)
            terms[term] = terms.get(term, 0.0) + coef
        return self._linear(terms, 1.0, bias)

    def _linear(self, terms: dict[int, float] | set[int], scale: float, bias: float = 0.0) -> Value:
        """The row of ``bias + scale * sum_r c_r * r`` (a set of rows: every ``c_r = 1``)."""
        coeffs = {r: scale * (1.0 if isinstance(terms, set) else terms[r]) for r in terms}
        coeffs = {r: c for r, c in coeffs.items() if c != 0.0}
        if not coeffs:
            return bias
        if len(coeffs) == 1 and bias == 0.0 and next(iter(coeffs.values())) == 1.0:
            return next(iter(coeffs))
        rows = sorted(coeffs)
        group = self._group(_Template("sum", "linear", (), self._height(rows)))
        return self._row(_Row(group, tuple(rows), tuple(coeffs[r] for r in rows), bias))

    def _power(self, expr: Any) -> Value:
        """``base ** e`` for a constant integer or half-integer e: ``power`` (``sqrt`` first for halves)."""
        base, exponent = (self.lower(a) for a in expr.args)
        if not isinstance(exponent, float):
            return self._problem("a non-constant exponent", expr)
        if isinstance(base, float):
            value = base**exponent
            return value if isinstance(value, float) else self._problem("a non-real constant", expr)
        twice = round(2.0 * exponent)
        if twice != 2.0 * exponent:
            return self._problem(f"exponent {exponent:g} (only integers and halves)", expr)
        if twice % 2 == 0:
            return self._power_row(base, twice // 2)
        if "sqrt" not in self._heads:
            return self._problem("a half-integer exponent (no op lists the sympy head 'sqrt')", expr)
        return self._power_row(self._unary(self._heads["sqrt"], base), twice)

    def _power_row(self, base: int, n: int) -> Value:
        if n == 0:
            return 1.0
        if n == 1:
            return base
        template = _Template("power", "power", (self.rows[base].group,), self._height([base]), n)
        return self._row(_Row(self._group(template), (base,)))

    def _unary(self, op: str, arg: int) -> int:
        template = _Template("op", op, (self.rows[arg].group,), self._height([arg]))
        return self._row(_Row(self._group(template), (arg,)))

    def _elementwise(self, op: str, expr: Any) -> Value:
        args = [self.lower(a) for a in expr.args]
        arity = REGISTRY[op].arity
        if arity >= 0 and arity != len(args):
            return self._problem(f"{len(args)} arguments to {op!r} (takes {arity})", expr)
        if all(isinstance(a, float) for a in args):
            tensors = [torch.tensor([a], dtype=torch.float64) for a in args]
            return float(REGISTRY[op].forward(*tensors)[0])
        if any(isinstance(a, float) for a in args):
            return self._problem(f"a constant argument of the {len(args)}-ary op {op!r}", expr)
        rows = [int(a) for a in args]
        template = _Template("op", op, tuple(self.rows[r].group for r in rows), self._height(rows))
        return self._row(_Row(self._group(template), tuple(rows)))

    # -- graph --------------------------------------------------------------------------------------
    def compile(self, b: GraphBuilder, inputs: Mapping[str, Var]) -> _Groups:
        """One vector per group, in order of height (arguments before their users)."""
        members: list[list[int]] = [[] for _ in self.templates]
        for r, row in enumerate(self.rows):
            members[row.group].append(r)
        groups = _Groups(self, [None] * len(self.templates), np.zeros(len(self.rows), dtype=np.int64))
        for g in sorted(range(len(self.templates)), key=lambda g: (self.templates[g].height, g)):
            groups.add(b, g, members[g], inputs)
        return groups


@dataclass
class _Groups:
    """The vector of each group and the position of each row in its group's vector."""

    lowering: _Lowering
    vectors: list[Var | None]
    position: np.ndarray

    def add(self, b: GraphBuilder, g: int, rows: list[int], inputs: Mapping[str, Var]) -> None:
        t, all_rows = self.lowering.templates[g], self.lowering.rows
        if t.kind == "input":
            self.vectors[g] = inputs[t.name]
            self.position[rows] = [all_rows[r].leaf for r in rows]
            return
        self.position[rows] = np.arange(len(rows))
        if t.kind == "sum":
            self.vectors[g] = self._sum(b, [all_rows[r] for r in rows])
            return
        slots = [self._gather(b, [all_rows[r].args[s] for r in rows]) for s in range(len(t.args))]
        if t.kind == "product":
            self.vectors[g] = self._product(b, slots)
        elif t.kind == "power":
            self.vectors[g] = b.power(slots[0], t.param)
        else:
            self.vectors[g] = b.apply(t.name, *slots)

    def _gather(self, b: GraphBuilder, rows: list[int]) -> Var:
        """The vector of ``rows``, which all belong to one group."""
        group = self.lowering.rows[rows[0]].group
        return b.gather(self.vectors[group], self.position[rows])

    @staticmethod
    def _product(b: GraphBuilder, slots: list[Var]) -> Var:
        out = slots[0]
        for s in slots[1:]:
            out = out * s
        return out

    def _sum(self, b: GraphBuilder, rows: list[_Row]) -> Var:
        """``W @ concat(term groups) + bias`` with a sparse W of the term coefficients."""
        x, offset = self._concat(b, sorted({self.lowering.rows[a].group for row in rows for a in row.args}))
        cols = [self._column(offset, a) for row in rows for a in row.args]
        rows_idx = [i for i, row in enumerate(rows) for _ in row.args]
        weight = _sparse(rows_idx, cols, [c for row in rows for c in row.coeffs], (len(rows), x.shape[0]))
        bias = np.array([row.bias for row in rows])
        return b.linear(x, weight, bias if np.any(bias != 0.0) else None)

    def _column(self, offset: dict[int, int], row: int) -> int:
        """Where ``row`` sits in a concatenation of groups starting at ``offset``."""
        return offset[self.lowering.rows[row].group] + int(self.position[row])

    def _concat(self, b: GraphBuilder, groups: list[int]) -> tuple[Var, dict[int, int]]:
        offset, parts, n = {}, [], 0
        for g in groups:
            v = self.vectors[g]
            if v is None:
                raise ValueError(f"group {g} is read before it is built")
            offset[g], n = n, n + v.shape[0]
            parts.append(v)
        return b.concat(parts), offset

    def assemble(self, b: GraphBuilder, values: list[Value]) -> Var:
        """The output vector of ``values`` (rows and constants): one gather from the concatenated groups
        (and a constant vector of the constant entries)."""
        groups = sorted({self.lowering.rows[v].group for v in values if not isinstance(v, float)})
        consts = [v for v in values if isinstance(v, float)]
        if not groups:
            return b.const(np.asarray(consts))
        x, offset = self._concat(b, groups)
        constant_at = iter(range(x.shape[0], x.shape[0] + len(consts)))
        index = [next(constant_at) if isinstance(v, float) else self._column(offset, v) for v in values]
        if consts:
            x = b.concat([x, b.const(np.asarray(consts))])
        return b.gather(x, np.asarray(index, dtype=np.int64))


def _sparse(rows: Sequence[int], cols: Sequence[int], values: Sequence[float], shape: tuple[int, int]) -> Any:
    """A float64 COO matrix (duplicate entries add up)."""
    index = torch.tensor([list(rows), list(cols)], dtype=torch.int64).reshape(2, -1)
    data = torch.tensor(list(values), dtype=torch.float64)
    return torch.sparse_coo_tensor(index, data, shape, check_invariants=True)

"""LP bounds on the piecewise-linear part of a graph, certified through their Lagrangian dual.

The *relu program* of a set of nodes is the linear program over one column per neuron of the nodes they
depend on through leaves, linear ops, relu and abs (any other op ends the walk: its neurons are free
columns within their intervals):

- a column's bounds are the neuron's interval (the box for inputs, the value for constants);
- a linear op ``y = sum_k J_k x_k + b`` gives the equality rows ``y - sum_k J_k x_k = b``, its Jacobians
  ``J_k`` read off exactly by vector-Jacobian products of its ``forward`` with one-hot cotangents;
- relu on ``[l, u]``: ``y = 0`` (u <= 0), ``y = x`` (l >= 0), else the triangle ``y >= x``, ``y >= 0``,
  ``y - s x <= h``; abs: ``y >= x``, ``y >= -x``, ``y - s x <= h``. ``f(x) - s x`` is convex, so for any
  float slope ``s`` the chord row holds on ``[l, u]`` with ``h = max(f(l) - s l, f(u) - s u)``, rounded up.

Every point the graph reaches from the box satisfies every row, so ``min c^T x`` over the program bounds
``c^T y`` from below. The solver (HiGHS, `highspy`) is trusted for nothing: only its row multipliers ``w``
are used, and for *any* ``w`` the Lagrangian bound

    min_x c^T x  >=  sum_j min(d_j l_j, d_j u_j) + sum_i min(w_i r_i, w_i R_i),   d = c - A^T w,

(row bounds ``r <= A x <= R``, column bounds ``l <= x <= u``) holds; `dual_bound` evaluates it in float64
and subtracts a bound on its rounding error (``gamma_K`` times the magnitudes, K the longest sum).
A wrong, inexact or time-limited solve gives a looser bound, never an unsound one.

`lp_intervals` tightens intervals with it: the unstable inputs of every relu / abs node first (node by
node, each program built on the intervals tightened so far), then the requested neurons of the targets.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from gridverify.bounds.core import Interval
from gridverify.deadline import Deadline
from gridverify.ir.graph import Graph
from gridverify.ops import get_op

PIECEWISE = frozenset({"relu", "abs"})
RowBlock = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Rows of a program: (row ids, column ids, values, row lower bounds, row upper bounds)."""
_EPS = 2.0**-53  # unit roundoff of float64


@dataclass(frozen=True)
class LpConfig:
    """How `lp_intervals` spends its time."""

    refine: bool = True  # LP-tighten the unstable inputs of relu / abs nodes before the targets
    refine_share: float = 0.5  # of the budget for that refinement (more when the targets are few)
    solve_s: float = 20.0  # time limit of one LP (a time-limited solve still gives a sound, looser bound)


@dataclass(frozen=True)
class LinearProgram:
    """``min c^T x`` subject to ``row_lower <= A x <= row_upper``, ``col_lower <= x <= col_upper``."""

    a: sparse.csc_array  # (rows, columns), float64
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    columns: dict[int, int]  # node -> column of its first neuron (flat order)

    @property
    def n_cols(self) -> int:
        return int(self.col_lower.shape[0])


def program_nodes(graph: Graph, targets: set[int] | frozenset[int]) -> tuple[list[int], set[int]]:
    """(nodes of the relu program of ``targets`` in topological order, those among them that are free:
    neither leaves nor linear nor relu / abs, so bounded only by their intervals)."""
    seen, free, stack = set(targets), set(), list(targets)
    while stack:
        i = stack.pop()
        node = graph.nodes[i]
        kind = get_op(node.op).kind
        if kind not in ("leaf", "linear") and node.op not in PIECEWISE:
            free.add(i)
            continue
        for j in node.inputs:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return sorted(seen), free


def piecewise_nodes(graph: Graph) -> frozenset[int]:
    """The piecewise-linear part of ``graph``: its leaves, and the linear, relu and abs ops whose inputs all
    lie in it (a node's value there is a piecewise-linear function of the inputs)."""
    out: set[int] = set()
    for i, node in enumerate(graph.nodes):
        kind = get_op(node.op).kind
        if (kind in ("leaf", "linear") or node.op in PIECEWISE) and out.issuperset(node.inputs):
            out.add(i)
    return frozenset(out)


def relu_program(graph: Graph, targets: set[int], intervals: list[Interval | None]) -> LinearProgram:
    """The relu program of ``targets`` (module docstring) on ``intervals`` (per node, ``(1, *S)``)."""
    shape = ProgramShape.of(graph, targets)
    return shape.on({i: _flat_interval(graph, i, intervals) for i in shape.order})


@dataclass(frozen=True)
class ProgramShape:
    """A relu program without its intervals: its columns, its linear rows (which no interval changes) and
    its kink rows, built once as one matrix (`template`); `on` fills in one domain's intervals: column
    bounds, and the kink rows' chord slopes (written into the template's data at `slots`) and ends. Every
    program of a shape has the same rows and nonzeros (a chord without finite ends is a free row), so
    `WarmSolver` moves from one to the next by changing numbers only, and `on` builds no sparse structure
    (case30 q_balance rows: 1.6 ms a program when it assembled the kink rows anew). Branch and bound solves
    one program per domain (`gridverify.bab.lp_cut`)."""

    graph: Graph
    order: tuple[int, ...]  # the program's nodes, topological
    columns: dict[int, int]  # node -> column of its first neuron (flat order)
    n_cols: int
    kinks: tuple[int, ...]  # relu / abs nodes with rows
    template: sparse.csc_array  # the linear rows ``y - sum_k J_k x_k = b``, then the kink rows
    row_lower: np.ndarray  # the template's row bounds; the chords' upper ends are filled in by `on`
    row_upper: np.ndarray
    chord_rows: np.ndarray  # (row, input column) of each chord's slope entry, kink by kink
    chord_cols: np.ndarray
    slots: np.ndarray  # where each chord's slope entry is in ``template.data``

    @staticmethod
    def of(graph: Graph, targets: set[int] | frozenset[int]) -> ProgramShape:
        order, free = program_nodes(graph, targets)
        columns, n = {}, 0
        for i in order:
            columns[i], n = n, n + graph.nodes[i].size
        kinks, blocks = [], []
        for i in order:
            node = graph.nodes[i]
            if i in free or node.op in ("input", "const"):
                continue
            if node.op in PIECEWISE:
                kinks.append(i)
            else:
                blocks.append(_linear_rows(graph, i, columns))
        rows, cols, first = [], [], sum(block[3].size for block in blocks)  # kink rows follow the linear
        for i in kinks:  # slope 1 stands for every chord's (an entry that `on` overwrites, never zero here)
            node = graph.nodes[i]
            size = node.size
            block = _kink_rows(
                node.op, columns[i], columns[node.inputs[0]], np.ones(size), np.full(size, np.inf)
            )
            blocks.append(block)
            first += block[3].size
            rows.append(first - size + np.arange(size))  # the chords are a kink block's last rows
            cols.append(columns[node.inputs[0]] + np.arange(size))
        empty = np.zeros(0)
        a, lo, hi = _assemble(blocks or [(empty, empty, empty, empty, empty)], n)
        chord_rows, chord_cols, slots = _chord_slots(a, rows, cols)
        return ProgramShape(
            graph, tuple(order), columns, n, tuple(kinks), a, lo, hi, chord_rows, chord_cols, slots
        )

    def on(self, bounds: dict[int, tuple[np.ndarray, np.ndarray]]) -> LinearProgram:
        """The program on one domain: ``bounds[node]`` (flat lower, flat upper) for every node of `order`
        (a constant's value, +-inf where a node has no interval)."""
        col_lower = np.concatenate([bounds[i][0] for i in self.order])
        col_upper = np.concatenate([bounds[i][1] for i in self.order])
        nodes = [self.graph.nodes[i] for i in self.kinks]
        pieces = [
            (n.op, self.columns[i], self.columns[n.inputs[0]], n.size) for i, n in zip(self.kinks, nodes)
        ]
        a, row_upper = _with_chords(self, pieces, col_lower, col_upper)
        return LinearProgram(a, self.row_lower, row_upper, col_lower, col_upper, self.columns)


def _chord_slots(
    a: sparse.csc_array, rows: list[np.ndarray], cols: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chord rows, their input columns, the positions of their slope entries in ``a.data``), ``a`` sorted
    in place; ``rows`` / ``cols`` per kink block."""
    a.sort_indices()
    chord_rows, chord_cols = (
        np.concatenate(t).astype(np.int64) if t else np.zeros(0, np.int64) for t in (rows, cols)
    )
    slots = np.array(
        [
            a.indptr[c] + np.searchsorted(a.indices[a.indptr[c] : a.indptr[c + 1]], r)
            for r, c in zip(chord_rows, chord_cols)
        ],
        dtype=np.int64,
    )
    if not np.array_equal(a.indices[slots], chord_rows):
        raise AssertionError("a chord's slope entry is missing from the program's matrix")
    return chord_rows, chord_cols, slots


def _with_chords(
    shape: ProgramShape | AffineShape,
    pieces: list[tuple[str, int, int, int]],
    col_lower: np.ndarray,
    col_upper: np.ndarray,
) -> tuple[sparse.csc_array, np.ndarray]:
    """The shape's matrix and row upper ends with the chords of one domain written in: ``pieces`` (op,
    output column, input column, neurons) per kink block, in the blocks' order; narrows the outputs'
    columns (`_chord`)."""
    if not pieces:
        return shape.template, shape.row_upper
    slopes, ends = [], []
    for op, out, inp, size in pieces:
        s, h = _chord(op, out, inp, col_lower, col_upper, size)
        slopes.append(s)
        ends.append(h)
    data = shape.template.data.copy()
    data[shape.slots] = -np.concatenate(slopes)
    row_upper = shape.row_upper.copy()
    row_upper[shape.chord_rows] = np.concatenate(ends)
    a = sparse.csc_array((data, shape.template.indices, shape.template.indptr), shape=shape.template.shape)
    return a, row_upper


AFFINE_ENTRIES = 4_000_000
"""Most entries (neurons x input dimensions) an `AffineShape` holds in its maps while it is built."""


@dataclass(frozen=True)
class AffineShape:
    """A relu program collapsed between the kinks it keeps. A surrogate trained for verifiability has nearly
    every relu's sign fixed over its region (case57: all 192; case14, case30, case118: all but one or two a
    layer): where a relu / abs input keeps its sign on every domain the program serves (`signs` +1 / -1),
    its neuron is its input, its negation or zero, and the layers between the neurons left open (`signs`
    0, the kept ones) are one affine map. Columns: the input, each kept neuron's input and output, the
    targets; rows: one per kept input and per target neuron, ``t - M u`` within ``v -+ E`` (``u``: the
    input and the kept outputs), and the kept neurons' kink rows with their chords, as in `ProgramShape`.
    A case57 balance row's program is 94 x 10 instead of 730 x 754.

    ``M``, ``v`` are composed in float64 node by node (exact Jacobians, `_jacobians`); ``E`` bounds, for
    every ``|u| <= reach``, the distance between the real value of the graph and ``M u + v``: the rounding
    of each composition (``gamma_K`` times the sums of magnitudes, K the terms of a sum) plus the errors
    carried from the inputs through ``|J|``, rounded up by a relative margin. The rows hold on every domain
    whose intervals give each fixed neuron its sign and keep each kept input within its reach (the caller
    checks, `holds_on`)."""

    graph: Graph
    order: tuple[int, ...]  # the nodes whose bounds `on` reads
    columns: dict[int, int]  # the input and the targets -> first column
    n_cols: int
    signs: dict[int, np.ndarray]  # relu / abs input node -> +1 / -1 (fixed) / 0 (kept) per neuron
    # (kink node, its kept neurons, their inputs' first column, their outputs' first column)
    kept: tuple[tuple[int, np.ndarray, int, int], ...]
    reach: dict[int, np.ndarray]  # kink input node -> max |value| of its kept neurons the rows assume
    template: sparse.csc_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    chord_rows: np.ndarray
    chord_cols: np.ndarray
    slots: np.ndarray
    kinks: tuple[int, ...]  # kink nodes with kept neurons (`gridverify.bab.lp_cut` splits their signs)

    @staticmethod
    def of(
        graph: Graph,
        targets: frozenset[int],
        signs: dict[int, np.ndarray],
        reach_x: np.ndarray,
        reach: dict[int, np.ndarray],
    ) -> AffineShape | None:
        """None where the program has free nodes, several inputs, a sign missing, or maps too large.
        ``reach_x``: ``max |x|`` per flat input dimension over the box; ``reach[j]``: ``max |value|`` of kink
        input j's kept neurons (those with sign 0) on every domain served."""
        order, free = program_nodes(graph, targets)
        inputs = [i for i in order if graph.nodes[i].op == "input"]
        if free or len(inputs) != 1 or graph.nodes[inputs[0]].size != reach_x.size:
            return None
        x = inputs[0]
        kinks = [i for i in order if graph.nodes[i].op in PIECEWISE]
        if any(graph.nodes[i].inputs[0] not in signs for i in kinks):
            return None
        columns, n = {x: 0}, reach_x.size
        kept, rows_of, chord_r, chord_c = [], [], [], []
        for i in kinks:
            j = graph.nodes[i].inputs[0]
            idx = np.flatnonzero(signs[j] == 0)
            if idx.size:
                if reach[j].shape != idx.shape or not np.all(np.isfinite(reach[j])):
                    return None
                kept.append((i, idx, n, n + idx.size))
                n += 2 * idx.size
        for t in sorted(targets):
            if t != x:
                columns[t], n = n, n + graph.nodes[t].size
        if sum(graph.nodes[i].size for i in order) * n > AFFINE_ENTRIES:
            return None
        span = np.zeros(n)  # max |u| per column: the input's and the kept outputs'
        span[: reach_x.size] = reach_x
        maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # node -> (M, v, E) over the columns
        eye = np.zeros((reach_x.size, n))
        eye[np.arange(reach_x.size), np.arange(reach_x.size)] = 1.0
        where = {k[0]: k for k in kept}
        blocks: list[RowBlock] = []
        for i in order:
            node = graph.nodes[i]
            if node.op == "input":
                maps[i] = (eye, np.zeros(node.size), np.zeros(node.size))
            elif node.op == "const":
                maps[i] = (np.zeros((node.size, n)), const_value(graph, i), np.zeros(node.size))
            elif node.op in PIECEWISE:
                j = node.inputs[0]
                sign = signs[j]
                m, v, e = maps[j]
                keep = sign > 0 if node.op == "relu" else sign != 0
                factor = np.where(keep, np.where(sign > 0, 1.0, -1.0), 0.0)  # x, -x (abs) or 0 (relu)
                m, v, e = m * factor[:, None], v * factor, e * (factor != 0)
                if i in where:
                    _, idx, p_col, y_col = where[i]
                    k = np.arange(idx.size)
                    # the kept inputs' rows, then the kept outputs as columns of their own
                    blocks.append(_affine_rows(maps[j][0][idx], p_col + k, maps[j][1][idx], maps[j][2][idx]))
                    m[idx] = 0.0
                    m[idx, y_col + k] = 1.0
                    span[y_col + k] = reach[j]
                    blocks.append(
                        _kink_rows(node.op, y_col, p_col, np.ones(idx.size), np.full(idx.size, np.inf))
                    )
                    rows_of.append((len(blocks) - 1, idx.size))
                    chord_c.append(p_col + k)
                maps[i] = (m, v, e)
            else:
                maps[i] = _composed(graph, i, maps, span)
        for t in sorted(targets):
            if graph.nodes[t].op not in ("input", "const"):
                m, v, e = maps[t]
                blocks.append(_affine_rows(m, columns[t] + np.arange(graph.nodes[t].size), v, e))
        empty = np.zeros(0)
        a, lo, hi = _assemble(blocks or [(empty, empty, empty, empty, empty)], n)
        starts = np.cumsum([0] + [b[3].size for b in blocks])
        for b, size in rows_of:  # the chords are a kink block's last rows
            chord_r.append(starts[b + 1] - size + np.arange(size))
        chord_rows, chord_cols, slots = _chord_slots(a, chord_r, chord_c)
        read = (x, *sorted({graph.nodes[k[0]].inputs[0] for k in kept} | {k[0] for k in kept}),
                *sorted(t for t in targets if t != x))  # fmt: skip
        return AffineShape(
            graph, read, columns, n, dict(signs), tuple(kept), dict(reach), a, lo, hi, chord_rows, chord_cols,
            slots, tuple(k[0] for k in kept),
        )  # fmt: skip

    def holds_on(self, bounds: dict[int, tuple[np.ndarray, np.ndarray]]) -> bool:
        """Whether one domain's intervals (flat lower, upper per relu / abs input node) give every fixed
        neuron its sign and keep every kept neuron within its reach."""
        for j, sign in self.signs.items():
            lo, hi = bounds[j]
            if not bool(np.all(np.where(sign > 0, lo >= 0, np.where(sign < 0, hi <= 0, True)))):
                return False
            kept = sign == 0
            if kept.any() and not bool(np.all(np.maximum(-lo[kept], hi[kept]) <= self.reach[j])):
                return False
        return True

    def on(self, bounds: dict[int, tuple[np.ndarray, np.ndarray]]) -> LinearProgram:
        """The program on one domain (`ProgramShape.on`): bounds of the input, the kept neurons' inputs and
        outputs, and the targets; the kept neurons' chords."""
        graph = self.graph
        x = self.order[0]
        parts_lo, parts_hi = [bounds[x][0]], [bounds[x][1]]
        pieces = []
        for i, idx, p_col, y_col in self.kept:
            j = graph.nodes[i].inputs[0]
            parts_lo += [bounds[j][0][idx], bounds[i][0][idx]]
            parts_hi += [bounds[j][1][idx], bounds[i][1][idx]]
            pieces.append((graph.nodes[i].op, y_col, p_col, idx.size))
        for t in sorted(c for c in self.columns if c != x):
            parts_lo.append(bounds[t][0])
            parts_hi.append(bounds[t][1])
        col_lower, col_upper = np.concatenate(parts_lo), np.concatenate(parts_hi)
        a, row_upper = _with_chords(self, pieces, col_lower, col_upper)
        return LinearProgram(a, self.row_lower, row_upper, col_lower, col_upper, self.columns)


def _affine_rows(m: np.ndarray, cols: np.ndarray, v: np.ndarray, e: np.ndarray) -> RowBlock:
    """Rows ``t - M u`` within ``v -+ E`` (rounded outward), one per neuron; ``cols`` its own columns."""
    size = cols.size
    rr, cc = np.nonzero(m)
    rows = np.concatenate([np.arange(size), rr])
    columns = np.concatenate([cols, cc])
    values = np.concatenate([np.ones(size), -m[rr, cc]])
    return rows, columns, values, np.nextafter(v - e, -np.inf), np.nextafter(v + e, np.inf)


def _composed(
    graph: Graph, i: int, maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], reach: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, v, E) of linear node i from its inputs' (`AffineShape`): ``M = sum_k J_k M_k``, ``v = sum_k J_k
    v_k + b`` in float64, and ``E`` bounding ``|real value - (M x + v)|`` for ``|x| <= reach``."""
    node = graph.nodes[i]
    n_in = reach.size
    m, v = np.zeros((node.size, n_in)), _offset(graph, i).copy()
    size_terms = np.abs(v).copy()  # sum of |J_k| (|M_k| reach + |v_k|) + |b|: what the sums' rounding acts on
    carried = np.zeros(node.size)  # sum of |J_k| E_k
    terms = 1
    for first, j, jac in _jacobians(graph, i):
        mj, vj, ej = maps[j]
        rows = slice(first, first + jac.shape[0])
        m[rows] += jac @ mj
        v[rows] += jac @ vj
        a = np.abs(jac)
        size_terms[rows] += a @ (np.abs(mj) @ reach + np.abs(vj))
        carried[rows] += a @ ej
        terms += 2 * jac.shape[1] + 2  # each product's inner sum, and the sums over inputs
    gamma = terms * _EPS / (1.0 - terms * _EPS)
    e = (gamma * size_terms + carried) * (1.0 + 1e-6) + np.finfo(np.float64).tiny
    return m, v, e


Shape = ProgramShape | AffineShape
"""The programs `WarmSolver` and the LP finish solve: the full relu program, or its affine collapse."""


def const_value(graph: Graph, i: int) -> np.ndarray:
    """A constant node's value, flat, float64."""
    t = graph.nodes[i].kwargs["value"].tensor
    values: np.ndarray = (t.to_dense() if t.is_sparse else t).to(torch.float64).reshape(-1).cpu().numpy()
    return values


def _flat_interval(graph: Graph, i: int, intervals: list[Interval | None]) -> tuple[np.ndarray, np.ndarray]:
    node = graph.nodes[i]
    if node.op == "const":
        v = const_value(graph, i)
        return v.copy(), v.copy()
    iv = intervals[i]
    if iv is None:
        inf = np.full(node.size, np.inf)
        return -inf, inf
    lo, hi = (t[:1].reshape(-1).detach().to(torch.float64).cpu().numpy() for t in iv)
    return lo.copy(), hi.copy()


def _linear_rows(graph: Graph, i: int, columns: dict[int, int], block: int = 512) -> RowBlock:
    """``y - sum_k J_k x_k = b``: (row ids, column ids, values, row lower, row upper) of node i, ``J_k`` by
    `_jacobians`."""
    size = graph.nodes[i].size
    b = _offset(graph, i)
    r, c, v = [np.arange(size)], [columns[i] + np.arange(size)], [np.ones(size)]
    for first, j, jac in _jacobians(graph, i, block):
        rr, cc = np.nonzero(jac)
        r.append(first + rr)
        c.append(columns[j] + cc)
        v.append(-jac[rr, cc])
    return np.concatenate(r), np.concatenate(c), np.concatenate(v), b.copy(), b.copy()


def _offset(graph: Graph, i: int) -> np.ndarray:
    """A linear node's value at zero inputs (its ``b``), flat, float64."""
    node = graph.nodes[i]
    shapes = [graph.nodes[j].shape for j in node.inputs]
    const = get_op(node.op).forward(
        *(torch.zeros((1, *s), dtype=torch.float64) for s in shapes), **node.kwargs
    )
    return const.detach().expand(1, *node.shape).reshape(-1).numpy()


def _jacobians(graph: Graph, i: int, block: int = 512) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first row, input node, dense ``J_k`` rows ``first ...``) of linear node i: each row a vector-Jacobian
    product of its ``forward`` with a one-hot cotangent (exact: one product per entry), ``block`` rows at a
    time; an input read twice comes twice."""
    node = graph.nodes[i]
    op, kw = get_op(node.op), node.kwargs
    size = node.size
    shapes = [graph.nodes[j].shape for j in node.inputs]
    for first in range(0, size, block):
        n = min(block, size - first)
        with torch.enable_grad():
            primals = [torch.zeros((n, *s), dtype=torch.float64, requires_grad=True) for s in shapes]
            y = op.forward(*primals, **kw)
            eye = torch.zeros(n, size, dtype=torch.float64)
            eye[torch.arange(n), first + torch.arange(n)] = 1.0
            grads = torch.autograd.grad(
                y, primals, grad_outputs=eye.reshape(n, *node.shape), allow_unused=True
            )
        for j, g in zip(node.inputs, grads):
            if g is not None:
                yield first, j, g.reshape(n, -1).numpy()


def _chord(
    op: str, out: int, inp: int, col_lower: np.ndarray, col_upper: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The chord ``y - s x <= h`` of ``y = relu(x)`` or ``y = abs(x)`` on each neuron's input interval
    [l, u] (module docstring; for a stable relu on its linear side it is y = x), as (s, h), with h = inf (a
    free row) where the interval has no two finite ends. Narrows y's columns to what [l, u] implies."""
    l, u = col_lower[inp : inp + size], col_upper[inp : inp + size]
    f = (lambda t: np.maximum(t, 0.0)) if op == "relu" else np.abs
    y_lo = np.where(l >= 0, f(l), np.where(u <= 0, f(u), 0.0))
    y_hi = np.maximum(f(l), f(u))
    col_lower[out : out + size] = np.maximum(col_lower[out : out + size], y_lo)
    col_upper[out : out + size] = np.minimum(col_upper[out : out + size], y_hi)
    chord = np.isfinite(l) & np.isfinite(u) & (u > l)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = np.where(chord, (f(u) - f(l)) / np.where(chord, u - l, 1.0), 0.0)
        ends = np.maximum(f(l) - s * l, f(u) - s * u)
        h = ends + 4 * _EPS * (np.abs(f(l)) + np.abs(s * l) + np.abs(f(u)) + np.abs(s * u))
    return s, np.where(chord & ~np.isnan(h), np.nextafter(h, np.inf), np.inf)  # overflow: no chord


def _kink_rows(op: str, out: int, inp: int, s: np.ndarray, h: np.ndarray) -> RowBlock:
    """Rows of ``y = relu(x)`` or ``y = abs(x)`` (module docstring) with chord slopes ``s`` and ends ``h``:
    ``y >= x`` (and ``y >= -x`` for abs), then one chord ``y - s x <= h`` per neuron."""
    size = s.size
    k = np.arange(size)
    ones, zeros = np.ones(size), np.zeros(size)
    # (y coefficients, x coefficients, lower ends, upper ends) of each block of rows
    pieces = [(ones, -ones, zeros, np.full(size, np.inf))]  # y >= x: an exact fact of both ops
    if op == "abs":
        pieces.append((ones, ones, zeros, np.full(size, np.inf)))  # y >= -x
    pieces.append((ones, -s, np.full(size, -np.inf), h))
    r, c, v, lo_all, hi_all = [], [], [], [], []
    for row, (wy, wx, lo, hi) in enumerate(pieces):
        rows = row * size + k
        r += [rows, rows]
        c += [out + k, inp + k]
        v += [wy, wx]
        lo_all.append(lo)
        hi_all.append(hi)
    return (
        np.concatenate(r),
        np.concatenate(c),
        np.concatenate(v),
        np.concatenate(lo_all),
        np.concatenate(hi_all),
    )


def _assemble(rows: list[RowBlock], n: int) -> tuple[sparse.csc_array, np.ndarray, np.ndarray]:
    """One matrix of row blocks (their rows stacked in order) over ``n`` columns, and its row bounds."""
    r_all, c_all, v_all, lo_all, hi_all = [], [], [], [], []
    offset = 0
    for r, c, v, lo, hi in rows:
        r_all.append(r + offset)
        c_all.append(c)
        v_all.append(v)
        lo_all.append(lo)
        hi_all.append(hi)
        offset += lo.size
    r, c = np.concatenate(r_all).astype(np.int64), np.concatenate(c_all).astype(np.int64)
    keys, v = _exact_sums(r * n + c, np.concatenate(v_all))
    a = sparse.csc_array((v, (keys // n, keys % n)), shape=(offset, n))
    return a, np.concatenate(lo_all), np.concatenate(hi_all)


def _exact_sums(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, their summed values). Entries of one (row, column) add up when an op reads one input
    twice; a sum that float64 cannot hold exactly would make the row differ from the graph, so it is
    refused (`ValueError`)."""
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    summed = np.zeros(unique.size)
    np.add.at(summed, inverse, values)
    for k in np.flatnonzero(counts > 1):
        exact = sum(Fraction(float(x)) for x in values[inverse == k])
        summed[k] = float(exact)
        if Fraction(float(summed[k])) != exact:
            raise ValueError("a linear op reads one input twice with coefficients whose sum rounds")
    return unique, summed


def dual_bound(lp: LinearProgram, cost: np.ndarray, row_dual: np.ndarray) -> float:
    """A certified lower bound of ``min cost^T x`` over ``lp`` from any row multipliers (module docstring),
    in float64 with its rounding error subtracted; -inf when a multiplier meets an infinite bound."""
    return float(dual_bounds(lp, cost, np.asarray(row_dual, dtype=np.float64)[None])[0])


def dual_bounds(lp: LinearProgram, cost: np.ndarray, row_duals: np.ndarray) -> np.ndarray:
    """`dual_bound` of each row of ``row_duals`` (k, rows): (k,), one product with the matrix for all."""
    w = np.nan_to_num(np.asarray(row_duals, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    w = np.where((w > 0) & ~np.isfinite(lp.row_lower), 0.0, w)
    w = np.where((w < 0) & ~np.isfinite(lp.row_upper), 0.0, w)
    at = lp.a.T
    d = cost - (at @ w.T).T
    col = np.where(
        d > 0, d * _finite_or(lp.col_lower, d > 0), np.where(d < 0, d * _finite_or(lp.col_upper, d < 0), 0)
    )
    row = np.where(
        w > 0, w * _finite_or(lp.row_lower, w > 0), np.where(w < 0, w * _finite_or(lp.row_upper, w < 0), 0)
    )
    finite = np.all(np.isfinite(col), axis=1) & np.all(np.isfinite(row), axis=1)
    magnitude = np.abs(cost) + (abs(at) @ np.abs(w).T).T
    reach = np.maximum(np.abs(lp.col_lower), np.abs(lp.col_upper))
    row_reach = np.maximum(_abs_finite(lp.row_lower), _abs_finite(lp.row_upper))
    with np.errstate(invalid="ignore"):  # rows that are not finite are -inf below
        mass = np.sum(np.where(magnitude > 0, magnitude * reach, 0.0), axis=1) + np.sum(
            np.abs(w) * row_reach, axis=1
        )
        longest = int(np.diff(lp.a.indptr).max(initial=0)) + lp.n_cols + lp.a.shape[0] + 4
        gamma = 2 * longest * _EPS / (1 - 2 * longest * _EPS)
        bound = np.sum(col, axis=1) + np.sum(row, axis=1) - 2 * gamma * mass - 1e-300
    return np.where(finite, bound, -np.inf)


def _finite_or(t: np.ndarray, used: np.ndarray) -> np.ndarray:
    """``t`` where it is used, 0 elsewhere (so an unused infinite bound does not meet a zero product)."""
    return np.where(used, t, 0.0)


def _abs_finite(t: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(t), np.abs(t), 0.0)


FARKAS_SCALES = (1e2, 1e4, 1e6)
"""Scales at which an infeasible program's dual ray is tried as multipliers (`LpSolver._farkas`)."""


class LpSolver:
    """One relu program in HiGHS; `lower` bounds ``min cost^T x`` for any number of costs (warm starts)."""

    def __init__(self, lp: LinearProgram) -> None:
        import highspy

        self.lp = lp
        h = _quiet_highs(highspy)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        h.setOptionValue("presolve", "off")  # only the cost changes between solves: warm starts instead
        h.setOptionValue("simplex_strategy", 4)  # primal simplex: the last basis stays feasible
        model = highspy.HighsLp()
        model.num_col_, model.num_row_ = lp.n_cols, lp.a.shape[0]
        model.col_cost_ = np.zeros(lp.n_cols)
        model.col_lower_ = np.where(np.isfinite(lp.col_lower), lp.col_lower, -highspy.kHighsInf)
        model.col_upper_ = np.where(np.isfinite(lp.col_upper), lp.col_upper, highspy.kHighsInf)
        model.row_lower_ = np.where(np.isfinite(lp.row_lower), lp.row_lower, -highspy.kHighsInf)
        model.row_upper_ = np.where(np.isfinite(lp.row_upper), lp.row_upper, highspy.kHighsInf)
        model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        model.a_matrix_.start_ = lp.a.indptr.astype(np.int32)
        model.a_matrix_.index_ = lp.a.indices.astype(np.int32)
        model.a_matrix_.value_ = lp.a.data
        h.passModel(model)
        self.highs = h
        self.indices = np.arange(lp.n_cols, dtype=np.int32)

    def reload(self, lp: LinearProgram, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        """Move to ``lp``, which differs from the program loaded only in its bounds and in the matrix
        entries at (``rows``, ``cols``), now ``values``; the next solve starts from the last basis (dual
        simplex: a basis stays dual feasible when only bounds change)."""
        import highspy

        h, inf = self.highs, highspy.kHighsInf
        h.setOptionValue("simplex_strategy", 1)
        h.changeColsBounds(
            lp.n_cols,
            self.indices,
            np.where(np.isfinite(lp.col_lower), lp.col_lower, -inf),
            np.where(np.isfinite(lp.col_upper), lp.col_upper, inf),
        )
        n_rows = lp.a.shape[0]
        h.changeRowsBounds(
            n_rows,
            np.arange(n_rows, dtype=np.int32),
            np.where(np.isfinite(lp.row_lower), lp.row_lower, -inf),
            np.where(np.isfinite(lp.row_upper), lp.row_upper, inf),
        )
        for r, c, v in zip(rows.tolist(), cols.tolist(), values.tolist()):
            h.changeCoeff(r, c, v)
        self.lp = lp

    def lower(self, cost: np.ndarray, time_limit_s: float) -> float:
        """Certified lower bound of ``min cost^T x`` (`dual_bound` of the solver's row multipliers)."""
        h = self.highs
        h.changeColsCost(self.lp.n_cols, self.indices, np.asarray(cost, dtype=np.float64))
        # HiGHS measures its time limit on a clock that runs across calls
        h.setOptionValue("time_limit", h.getRunTime() + max(float(time_limit_s), 1e-3))
        h.run()
        # the multipliers of any solve, finished or not, give a sound bound: a time-limited one is used too
        w = np.asarray(h.getSolution().row_dual, dtype=np.float64)
        zero = np.zeros(self.lp.a.shape[0])
        candidates = [zero] + ([w] if w.shape == zero.shape else []) + self._farkas(zero.shape)
        return float(dual_bounds(self.lp, cost, np.stack(candidates)).max())

    def _farkas(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """Where the program is infeasible: its dual ray at growing scales (and both signs, whatever the
        solver's convention). A ray that proves infeasibility makes the Lagrangian bound grow with its scale,
        so an empty sub-domain gets a bound above any objective instead of the loose one of the last
        multipliers (a sign pattern of `gridverify.bab.lp_cut` that the domain's intervals rule out)."""
        import highspy

        h = self.highs
        if h.getModelStatus() != highspy.HighsModelStatus.kInfeasible:
            return []
        _, has_ray, ray = h.getDualRay()
        if not has_ray:  # primal simplex (a cold start) finds no ray: dual simplex from scratch does
            h.setOptionValue("simplex_strategy", 1)
            h.clearSolver()
            h.run()
            if h.getModelStatus() != highspy.HighsModelStatus.kInfeasible:
                return []
            _, has_ray, ray = h.getDualRay()
        ray = np.asarray(ray, dtype=np.float64)
        if not has_ray or ray.shape != shape or not np.all(np.isfinite(ray)):
            return []
        return [sign * scale * ray for scale in FARKAS_SCALES for sign in (1.0, -1.0)]


class WarmSolver:
    """The programs of one `ProgramShape`, one after another in one HiGHS instance, each solve starting
    from the last one's basis: siblings' programs differ in a few bounds, so few iterations follow
    (case14 balance rows: 21 on average, 1.6 ms a program against 8 ms for a cold solve)."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.solver: LpSolver | None = None
        self.slopes = np.zeros(0)  # the chord entries HiGHS holds now

    def lower(self, lp: LinearProgram, cost: np.ndarray, time_limit_s: float) -> float:
        """Certified lower bound of ``min cost^T x`` over ``lp``, a program of this shape."""
        rows, cols = self.shape.chord_rows, self.shape.chord_cols
        slopes = lp.a.data[self.shape.slots]
        if self.solver is None:
            self.solver = LpSolver(lp)
        else:
            changed = np.flatnonzero(slopes != self.slopes)
            self.solver.reload(lp, rows[changed], cols[changed], slopes[changed])
        self.slopes = slopes
        return self.solver.lower(cost, time_limit_s)


_BANNER_SHOWN = False
_BANNER_LOCK = threading.Lock()


def _quiet_highs(highspy: Any) -> Any:
    """A ``Highs`` instance; the first one of a process prints HiGHS's banner to the C-level stdout, which
    is pointed at /dev/null while it is made (no option turns the banner off). Under a lock: threads of
    the LP finish make their first instances together, and two redirections at once would leave stdout
    pointed at /dev/null."""
    global _BANNER_SHOWN
    with _BANNER_LOCK:
        if _BANNER_SHOWN:
            return highspy.Highs()
        _BANNER_SHOWN = True
        try:
            sys.stdout.flush()
            saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError, AttributeError):
            return highspy.Highs()
        try:
            os.dup2(null, 1)
            return highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(null)
            os.close(saved)


def neuron_bounds(
    lp: LinearProgram, node: int, rows: np.ndarray, deadline: Deadline, solve_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Certified (lower, upper) of the flat neurons ``rows`` of ``node`` over ``lp``; neurons left when
    ``deadline`` passes keep their column bounds."""
    solver = LpSolver(lp)
    col = lp.columns[node] + np.asarray(rows, dtype=np.int64)
    lo, hi = lp.col_lower[col].copy(), lp.col_upper[col].copy()
    cost = np.zeros(lp.n_cols)
    for k, j in enumerate(col):
        for side in (1.0, -1.0):
            left = deadline.end - time.monotonic()
            if left <= 0:
                return lo, hi
            cost[j] = side
            bound = solver.lower(cost, min(solve_s, left))
            if side > 0:
                lo[k] = max(lo[k], bound)
            else:
                hi[k] = min(hi[k], -bound)
            cost[j] = 0.0
    return lo, hi


def lp_intervals(
    graph: Graph,
    targets: dict[int, Tensor],
    intervals: list[Interval | None],
    config: LpConfig,
    budget_s: float,
) -> list[Interval | None]:
    """``intervals`` (per node, ``(1, *S)``) with the neurons ``targets[node]`` (flat indices) tightened by
    the relu program, after the unstable inputs of its relu / abs nodes (``config.refine``); every
    narrowing is an intersection with a certified bound, so the result holds wherever ``intervals`` do."""
    deadline = Deadline.after(budget_s)
    out = list(intervals)
    if config.refine:
        order, free = program_nodes(graph, set(targets))
        kinks = [graph.nodes[i].inputs[0] for i in order if graph.nodes[i].op in PIECEWISE and i not in free]
        kinks = [z for z in kinks if _has_kink_above(graph, z)]
        until = deadline.until(deadline.start + _refine_share(config, kinks, out, targets) * budget_s)
        for z in kinks:
            rows = _unstable(out[z])
            if rows.size and not until.passed():
                out[z] = _narrow(graph, out, z, rows, until, config.solve_s)
    for z in sorted(targets):
        if deadline.passed():
            break
        rows = targets[z].cpu().numpy()
        out[z] = _narrow(graph, out, z, rows, deadline, config.solve_s)
    return out


def _narrow(
    graph: Graph, intervals: list[Interval | None], z: int, rows: np.ndarray, until: Deadline, solve_s: float
) -> Interval:
    """Node z's interval with the flat neurons ``rows`` intersected with their LP bounds, ``(1, *S)``."""
    lo, hi = neuron_bounds(relu_program(graph, {z}, intervals), z, rows, until, solve_s)
    shape = (1, *graph.nodes[z].shape)
    old = intervals[z]
    if old is None:
        inf = torch.full(shape, np.inf, dtype=torch.float64)
        old = (-inf, inf)
    new_lo, new_hi = (t[:1].detach().clone().reshape(1, -1) for t in old)
    idx = torch.as_tensor(rows, dtype=torch.long)
    new_lo[0, idx] = torch.maximum(new_lo[0, idx], torch.as_tensor(lo, dtype=new_lo.dtype))
    new_hi[0, idx] = torch.minimum(new_hi[0, idx], torch.as_tensor(hi, dtype=new_hi.dtype))
    return new_lo.reshape(shape), new_hi.reshape(shape)


def _refine_share(
    config: LpConfig, kinks: list[int], intervals: list[Interval | None], targets: dict[int, Tensor]
) -> float:
    """The budget's share for refinement: ``config.refine_share``, or more (up to 0.8: the targets keep a
    fifth) when the targets are few next to the neurons to refine (a target's program is the largest:
    counted twice)."""
    refine = sum(int(_unstable(intervals[z]).size) for z in kinks)
    wanted = 2 * sum(int(r.numel()) for r in targets.values())
    return min(max(config.refine_share, refine / max(refine + wanted, 1)), 0.8)


def _unstable(iv: Interval | None) -> np.ndarray:
    """Flat neurons whose interval straddles the kink at 0."""
    if iv is None:
        return np.zeros(0, dtype=np.int64)
    lo, hi = (t[:1].reshape(-1).detach().cpu().numpy() for t in iv)
    return np.flatnonzero((lo < 0) & (hi > 0))


def _has_kink_above(graph: Graph, z: int) -> bool:
    """Whether z depends on a relu / abs (otherwise it is a linear map of the box, which CROWN bounds
    exactly and the program cannot improve)."""
    return any(graph.nodes[j].op in PIECEWISE for j in graph.ancestors(z) if j != z)

"""Sub-domains of a branch-and-bound search, batched as tensors on the torch device.

A problem maximises ``c^T y(x)`` over an input box; each domain is a piece of it: an input box, and for
every node that feeds a relaxation a per-neuron interval (the parent's, with one neuron narrowed by each
neuron split). A narrowed neuron carries a split constraint (``z_j >= l_j`` and/or ``z_j <= u_j``) that
enters the bound with a multiplier beta >= 0 (beta-CROWN). Relaxation parameters (alpha) and betas are
inherited from the parent (warm start).

Shapes: ``B`` domains; ``S_j`` the shape of node j; the graph has one input of shape ``S_in``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gridverify.bounds.core import Interval, Plan, make_plan
from gridverify.bounds.crown import resolve
from gridverify.const import Const
from gridverify.ir.graph import Graph, Node
from gridverify.ops import get_op


@dataclass(frozen=True)
class Problem:
    """Maximise ``c^T y_output`` over the box ``[lower, upper]`` (each ``(1, *S_in)``)."""

    graph: Graph
    output: int
    input_name: str
    plan: Plan
    lower: Tensor
    upper: Tensor

    @staticmethod
    def make(graph: Graph, box: tuple[Tensor, Tensor], output: str | int | None = None) -> Problem:
        if len(graph.inputs) != 1:
            raise ValueError(
                f"branch and bound needs a graph with one input, got {[n for n, _ in graph.inputs]}"
            )
        graph, ibox, out = resolve(graph, box, output)
        name = graph.inputs[0][0]
        lo, hi = ibox[name]
        if lo.shape[0] != 1:
            raise ValueError(f"branch and bound takes one input box, got a batch of {lo.shape[0]}")
        return Problem(graph, out, name, make_plan(graph, out), lo, hi)

    @cached_property
    def split_nodes(self) -> tuple[int, ...]:
        """Nodes whose neurons may be split: inputs of nonlinear ops that allow it (`OpDef.splittable`)."""
        found: set[int] = set()
        for i in sorted(self.plan.needed):
            node = self.graph.nodes[i]
            op = get_op(node.op)
            if op.kind == "nonlinear" and op.splittable:
                found.update(j for j in node.inputs if self.graph.nodes[j].op != "const")
        return tuple(sorted(found))

    @cached_property
    def consumers(self) -> dict[int, tuple[tuple[int, int], ...]]:
        """split node -> ((nonlinear consumer, input position), ...) among the nodes the output needs."""
        found: dict[int, list[tuple[int, int]]] = {z: [] for z in self.split_nodes}
        for i in sorted(self.plan.needed):
            node = self.graph.nodes[i]
            if get_op(node.op).kind == "nonlinear":
                for k, j in enumerate(node.inputs):
                    if j in found:
                        found[j].append((i, k))
        return {z: tuple(uses) for z, uses in found.items()}


@dataclass(frozen=True)
class Folded:
    """A problem whose fixed input dimensions (``lower == upper``) are folded into the biases of the linear
    maps that read the input, and the way back: ``free`` (n_free,) the flat indices of the original input
    that the folded problem's input holds, ``point`` (1, *S_in) the original box's lower corner."""

    problem: Problem
    free: Tensor
    point: Tensor

    def widen(self, x: Tensor) -> Tensor:
        """Points (..., n_free) of the folded input as points (..., *S_in) of the original."""
        full = self.point.reshape(-1).to(x).expand(*x.shape[:-1], -1).clone()
        full[..., self.free] = x
        return full.reshape(*x.shape[:-1], *self.point.shape[1:])

    def narrow(self, x: Tensor) -> Tensor:
        """Points (..., *S_in) of the original input as points (..., n_free) of the folded."""
        return x.reshape(*x.shape[: x.ndim - self.point.ndim + 1], -1)[..., self.free]


FOLD_MIN_FIXED = 0.5
"""`fold_fixed_inputs` folds only when at least this share of the input dimensions is fixed."""


def fold_fixed_inputs(problem: Problem) -> Folded | None:
    """The same problem over the free input dimensions only, or None when fewer than `FOLD_MIN_FIXED` of
    them are fixed or something other than a dense linear map reads the input.

    A linear map ``W x + b`` with ``x_F`` fixed at ``v`` becomes ``W[:, free] x_free + (b + W[:, F] v)``,
    the new bias summed exactly and rounded once (`_exact_bias`): the same function up to the half ulp of
    rounding that any float64 bias of the graph carries. Every bound, split and
    attack then works on ``n_free`` input columns instead of all: dist_shift_2023 has 8 free inputs of 792,
    so each child's CROWN pass carried (B, 784, 792) coefficients for 8 that matter."""
    graph, in_id = problem.graph, problem.graph.input_ids[problem.input_name]
    lo, hi = problem.lower.reshape(-1), problem.upper.reshape(-1)
    fixed = lo == hi
    readers = [i for i, n in enumerate(graph.nodes) if in_id in n.inputs]
    if float(fixed.double().mean()) < FOLD_MIN_FIXED or len(graph.nodes[in_id].shape) != 1:
        return None
    if not all(_dense_linear(graph.nodes[i]) for i in readers):
        return None
    free = (~fixed).nonzero().squeeze(1)
    nodes = list(graph.nodes)
    shape = (int(free.numel()),)
    nodes[in_id] = replace(graph.nodes[in_id], shape=shape, params=_with(graph.nodes[in_id], shape=shape))
    for i in readers:
        w, b = graph.nodes[i].kwargs["weight"].tensor, graph.nodes[i].kwargs.get("bias")
        bias = _exact_bias(w[:, fixed], lo[fixed], None if b is None else b.tensor)
        changed = _with(graph.nodes[i], weight=Const(w[:, free]), bias=Const(bias))
        nodes[i] = replace(graph.nodes[i], params=changed)
    folded = Graph(tuple(nodes), graph.inputs, graph.outputs)
    lower, upper = problem.lower.reshape(1, -1)[:, free], problem.upper.reshape(1, -1)[:, free]
    plan = make_plan(folded, problem.output)
    return Folded(replace(problem, graph=folded, plan=plan, lower=lower, upper=upper), free, problem.lower)


def _exact_bias(w: Tensor, v: Tensor, b: Tensor | None) -> Tensor:
    """(k,) ``b + w @ v`` rounded once to the nearest float64: each product split exactly into its rounded
    value and its error (Dekker's two-product), the sum of all of them by `math.fsum` (exact, then rounded
    once), so the folded bias is as close to the exact one as any float64 constant can be."""
    w64, v64 = w.double().numpy(), v.double().numpy()
    prod = w64 * v64
    err = _two_product_error(w64, np.broadcast_to(v64, w64.shape), prod)
    rows = [list(p) + list(e) for p, e in zip(prod.tolist(), err.tolist())]
    base = [0.0] * len(rows) if b is None else b.double().tolist()
    return torch.tensor([math.fsum([c, *r]) for c, r in zip(base, rows)], dtype=torch.float64)


def _two_product_error(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``a * b - p`` exactly, for ``p = fl(a * b)`` (Dekker's split into 26-bit halves; no overflow
    assumed: the weights and inputs of a network are far from 1e300)."""

    def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = 134217729.0 * x  # 2^27 + 1
        hi = c - (c - x)
        return hi, x - hi

    a_hi, a_lo = split(a)
    b_hi, b_lo = split(b)
    err: np.ndarray = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return err


def _dense_linear(node: Node) -> bool:
    w = node.kwargs.get("weight")
    return node.op == "linear" and len(node.inputs) == 1 and isinstance(w, Const) and not w.tensor.is_sparse


def _with(node: Node, **changes: object) -> tuple[tuple[str, object], ...]:
    """``node``'s params with ``changes``, sorted by name."""
    params = dict(node.params)
    params.update(changes)
    return tuple(sorted(params.items()))


@dataclass(frozen=True, kw_only=True)
class Domains:
    """A batch of sub-domains (see the module docstring). Built by keyword only: a new field cannot shift
    the others."""

    lower: Tensor  # (B, *S_in)
    upper: Tensor
    spec: Tensor  # (B, n_out): maximise spec . y
    spec_id: Tensor  # (B,) index of the specification each domain belongs to
    intervals: tuple[Interval | None, ...]  # per node (B, *S_j)
    alpha: dict[int, Tensor]  # per relaxed node j: (P_j, B, 1, *S_j)
    beta_lo: dict[int, Tensor]  # per split node: multiplier of z_j >= l_j, (B, *S_j)
    beta_hi: dict[int, Tensor]  # multiplier of z_j <= u_j
    split_lo: dict[int, Tensor]  # bool (B, *S_j): z_j >= l_j is a split constraint
    split_hi: dict[int, Tensor]
    bound: Tensor  # (B,) certified upper bound of spec . y on the domain
    depth: Tensor  # (B,)
    coeffs: dict[int, Tensor] = field(default_factory=dict)  # last pass: coefficient of each relaxed output
    input_coeff: Tensor | None = None  # last pass: coefficient of the graph input, (B, *S_in)
    # last pass: the upper bound of spec . y that input_coeff's line gives over the domain's box, (B,)
    line_bound: Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.lower.shape[0])

    @property
    def neuron_split(self) -> bool:
        """Whether a domain of the batch has a neuron split (a set ``split_lo`` / ``split_hi`` flag)."""
        return any(bool(f.any()) for f in (*self.split_lo.values(), *self.split_hi.values()))


def select(d: Domains, idx: Tensor) -> Domains:
    """The domains at positions ``idx``."""
    return Domains(
        lower=d.lower[idx],
        upper=d.upper[idx],
        spec=d.spec[idx],
        spec_id=d.spec_id[idx],
        intervals=tuple(
            None if iv is None else (iv[0].index_select(0, idx), iv[1].index_select(0, idx))
            for iv in d.intervals
        ),
        alpha={k: v.index_select(1, idx) for k, v in d.alpha.items()},
        beta_lo={k: v[idx] for k, v in d.beta_lo.items()},
        beta_hi={k: v[idx] for k, v in d.beta_hi.items()},
        split_lo={k: v[idx] for k, v in d.split_lo.items()},
        split_hi={k: v[idx] for k, v in d.split_hi.items()},
        bound=d.bound[idx],
        depth=d.depth[idx],
        coeffs={k: v[idx] for k, v in d.coeffs.items()},
        input_coeff=None if d.input_coeff is None else d.input_coeff[idx],
        line_bound=None if d.line_bound is None else d.line_bound[idx],
    )


def _cat_intervals(parts: Sequence[tuple[Interval | None, ...]]) -> tuple[Interval | None, ...]:
    out = []
    for ivs in zip(*parts):
        out.append(
            None if ivs[0] is None else (torch.cat([iv[0] for iv in ivs]), torch.cat([iv[1] for iv in ivs]))
        )
    return tuple(out)


def concat(parts: Sequence[Domains]) -> Domains:
    """One batch from several (same problem)."""
    if len(parts) == 1:
        return parts[0]

    def cat(get: Callable[[Domains], dict[Any, Tensor]], dim: int = 0) -> dict[Any, Tensor]:
        return {k: torch.cat([get(p)[k] for p in parts], dim) for k in get(parts[0])}

    return Domains(
        lower=torch.cat([p.lower for p in parts]),
        upper=torch.cat([p.upper for p in parts]),
        spec=torch.cat([p.spec for p in parts]),
        spec_id=torch.cat([p.spec_id for p in parts]),
        intervals=_cat_intervals([p.intervals for p in parts]),
        alpha=cat(lambda p: p.alpha, 1),
        beta_lo=cat(lambda p: p.beta_lo),
        beta_hi=cat(lambda p: p.beta_hi),
        split_lo=cat(lambda p: p.split_lo),
        split_hi=cat(lambda p: p.split_hi),
        bound=torch.cat([p.bound for p in parts]),
        depth=torch.cat([p.depth for p in parts]),
        coeffs=cat(lambda p: p.coeffs) if all(p.coeffs for p in parts) else {},
        input_coeff=_cat_or_none([p.input_coeff for p in parts]),
        line_bound=_cat_or_none([p.line_bound for p in parts]),
    )


def select_then(d: Domains, idx: Tensor, more: Domains) -> Domains:
    """``concat([select(d, idx), more])`` with each tensor copied once: the search's open domains less those
    it splits, then the children, every batch (cGAN: ~4 MB a domain, hundreds open)."""
    if idx.numel() == 0:
        return more

    def take(get: Callable[[Domains], dict[Any, Tensor]], dim: int = 0) -> dict[Any, Tensor]:
        return {k: _take_then(v, idx, get(more)[k], dim) for k, v in get(d).items()}

    def opt(t: Tensor | None, m: Tensor | None) -> Tensor | None:
        return None if t is None or m is None else _take_then(t, idx, m)

    return Domains(
        lower=_take_then(d.lower, idx, more.lower),
        upper=_take_then(d.upper, idx, more.upper),
        spec=_take_then(d.spec, idx, more.spec),
        spec_id=_take_then(d.spec_id, idx, more.spec_id),
        intervals=tuple(_take_interval(iv, idx, jv) for iv, jv in zip(d.intervals, more.intervals)),
        alpha=take(lambda p: p.alpha, 1),
        beta_lo=take(lambda p: p.beta_lo),
        beta_hi=take(lambda p: p.beta_hi),
        split_lo=take(lambda p: p.split_lo),
        split_hi=take(lambda p: p.split_hi),
        bound=_take_then(d.bound, idx, more.bound),
        depth=_take_then(d.depth, idx, more.depth),
        coeffs=take(lambda p: p.coeffs) if d.coeffs and more.coeffs else {},
        input_coeff=opt(d.input_coeff, more.input_coeff),
        line_bound=opt(d.line_bound, more.line_bound),
    )


def _take_interval(iv: Interval | None, idx: Tensor, more: Interval | None) -> Interval | None:
    if iv is None or more is None:
        return None
    return _take_then(iv[0], idx, more[0]), _take_then(iv[1], idx, more[1])


def _take_then(t: Tensor, idx: Tensor, more: Tensor, dim: int = 0) -> Tensor:
    """``torch.cat([t.index_select(dim, idx), more], dim)`` in one copy (shapes must agree off ``dim``)."""
    off = t.shape[:dim] + t.shape[dim + 1 :]
    if off != more.shape[:dim] + more.shape[dim + 1 :] or t.dtype != more.dtype:
        return torch.cat([t.index_select(dim, idx), more], dim)  # raises on a mismatch, as concat does
    k = idx.numel()
    out = t.new_empty((*t.shape[:dim], k + more.shape[dim], *t.shape[dim + 1 :]))
    torch.index_select(t, dim, idx, out=out.narrow(dim, 0, k))
    out.narrow(dim, k, more.shape[dim]).copy_(more)
    return out


def _cat_or_none(ts: Sequence[Tensor | None]) -> Tensor | None:
    """The tensors concatenated, or None when one of them is (a part without the last pass's lines)."""
    found = [t for t in ts if t is not None]
    return torch.cat(found) if len(found) == len(ts) else None


def with_bound(d: Domains, bound: Tensor, **changes: object) -> Domains:
    return replace(d, bound=bound, **changes)  # type: ignore[arg-type]

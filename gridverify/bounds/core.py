"""Shared pieces of bound propagation: input boxes, specifications, results, IBP of one node, and the plan
that says which nodes need bounds and how.

Shapes: ``B`` domains (batch of input boxes), ``m`` specifications, ``S`` a node's unbatched shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gridverify.ir.graph import Graph, Node
from gridverify.ops import DomainError, Relaxation, get_op
from gridverify.ops.registry import OpDef

Interval = tuple[Tensor, Tensor]
InputBox = Mapping[str, Interval]
BoxLike = InputBox | Interval
Relaxer = Callable[[int, int, tuple[Tensor, ...], tuple[Tensor, ...]], Relaxation]
"""(start node, nonlinear node, input lowers, input uppers) -> lines broadcastable to (B, m_start, *S)."""


def known(iv: Interval | None) -> Interval:
    """An interval the plan guarantees (of an input of a relaxed op, of a boundary neuron): never None."""
    if iv is None:
        raise ValueError("an interval the plan guarantees is missing")
    return iv


@dataclass(frozen=True)
class LinearBounds:
    """``lower_bias + sum_i <lower[i], x_i>  <=  C y  <=  upper_bias + sum_i <upper[i], x_i>`` on the box.

    ``lower[name]`` / ``upper[name]``: ``(B, m, *S_name)`` for each graph input; biases ``(B, m)``.
    """

    lower: dict[str, Tensor]
    lower_bias: Tensor
    upper: dict[str, Tensor]
    upper_bias: Tensor


@dataclass(frozen=True)
class BoundResult:
    """Certified bounds ``lower <= C y(x) <= upper`` (each ``(B, m)``) for every x in the input box.

    ``intervals[i]`` is the box of node i (``None`` for nodes the target does not depend on), reusable by
    branch and bound; ``linear`` the linear bounds w.r.t. the graph inputs (absent for IBP).
    """

    lower: Tensor
    upper: Tensor
    intervals: tuple[Interval | None, ...]
    linear: LinearBounds | None = None
    method: str = ""


CERTIFIED_DTYPE = torch.float64
"""The only dtype bounds are computed in: relaxations are rounded outward by margins of a few float64 ulps,
and constants (clip's limits, a linear map's weights) are float64 values; in float32 rounding to nearest
would move constants and lines by up to 1e-7 relative, in either direction, so float32 boxes are refused
rather than certified unsoundly."""


def as_box(graph: Graph, box: BoxLike) -> dict[str, Interval]:
    """Validate an input box: one (lower, upper) pair ``(B, *S)`` per graph input, lower <= upper, float64
    (`CERTIFIED_DTYPE`; anything else raises ValueError)."""
    if isinstance(box, tuple):
        if len(graph.inputs) != 1:
            raise ValueError(f"graph has inputs {[n for n, _ in graph.inputs]}: pass a dict of boxes")
        box = {graph.inputs[0][0]: box}
    out = {}
    for name, i in graph.inputs:
        if name not in box:
            raise ValueError(f"no box for graph input {name!r}")
        lo, hi = box[name]
        if lo.dtype != CERTIFIED_DTYPE or hi.dtype != CERTIFIED_DTYPE:
            raise ValueError(
                f"box of {name!r} is {lo.dtype}/{hi.dtype}: certified bounds are computed in float64 only "
                "(float32 relaxations and constants are not rounded outward); pass lower.double(), "
                "upper.double()"
            )
        shape = graph.nodes[i].shape
        if tuple(lo.shape[1:]) != shape or lo.shape != hi.shape:
            raise ValueError(
                f"box of {name!r} needs lower/upper of shape (B, *{shape}), got {lo.shape}, {hi.shape}"
            )
        if bool((lo > hi).any()):
            raise ValueError(f"box of {name!r} has lower > upper at {int((lo > hi).sum())} entries")
        out[name] = (lo, hi)
    batch = {lo.shape[0] for lo, _ in out.values()}
    if len(batch) != 1:
        raise ValueError(f"all input boxes need the same batch size, got {sorted(batch)}")
    return out


def spec_matrix(graph: Graph, output: int, spec: Tensor | None, like: Tensor) -> Tensor:
    """C as ``(B or 1, m, *S_out)``; identity over the output's entries when ``spec`` is None."""
    shape = graph.nodes[output].shape
    n = graph.nodes[output].size
    if spec is None:
        c = torch.eye(n, dtype=like.dtype, device=like.device).unsqueeze(0)
    else:
        c = spec.to(dtype=like.dtype, device=like.device)
        c = c.unsqueeze(0) if c.ndim == 2 else c
        if c.ndim != 3 or c.shape[-1] != n:
            raise ValueError(
                f"spec must be (m, {n}) or (B, m, {n}) for output shape {shape}, got {tuple(spec.shape)}"
            )
    return c.reshape(c.shape[0], c.shape[1], *shape)


def node_interval(graph: Graph, i: int, intervals: list[Interval | None], box: InputBox) -> Interval:
    """IBP for node i from its inputs' intervals; a nonlinear op's interval is clamped to its range (the
    registry's wrapper of ``interval``), so a square or an exp is never given a negative lower bound."""
    node = graph.nodes[i]
    kw = node.kwargs
    if node.op == "input":
        return box[kw["name"]]
    if node.op == "const":
        v = kw["value"].like(next(iter(box.values()))[0]).unsqueeze(0)
        return v, v
    lows = tuple(intervals[j][0] for j in node.inputs)  # type: ignore[index]
    ups = tuple(intervals[j][1] for j in node.inputs)  # type: ignore[index]
    op = get_op(node.op)
    try:
        lo, hi = op.interval(lows, ups, **kw)  # type: ignore[misc]
    except DomainError as err:
        raise DomainError(f"{describe(graph, i)}: {err}") from None
    if op.kind != "linear" or not (op.mixes or op.abs_linear is not None):
        return lo, hi  # nonlinear ops clamp and round their own; copies (gather, reshape, neg) round nothing
    if op.keeps_nonnegative and op.constant_term is None:
        # nondecreasing, no constant: lo = f(lows) and hi = f(ups) are sums of nonnegative multiples of
        # one corner each, so each end rounds by a multiple of f at that corner's magnitudes alone (a
        # softmax denominator 1 + sum exp over [e^-9, e^212] keeps its lower end near 1)
        low_step = LINEAR_ROUNDING * (op.forward(*(t.abs() for t in lows), **kw) + lo.abs())
        high_step = LINEAR_ROUNDING * (op.forward(*(t.abs() for t in ups), **kw) + hi.abs())
        low = lo - low_step.nan_to_num(nan=torch.inf)
        if all(bool((x >= 0).all()) for x in lows):
            low = low.clamp(min=0.0)
        return low, hi + high_step.nan_to_num(nan=torch.inf)
    step = LINEAR_ROUNDING * (_magnitude(op, lows, ups, kw) + lo.abs() + hi.abs())
    step = step.nan_to_num(nan=torch.inf)
    low = lo - step
    if op.keeps_nonnegative and all(bool((x >= 0).all()) for x in lows):
        low = low.clamp(min=0.0)
    return low, hi + step


LINEAR_ROUNDING = 1e-12
"""Relative outward margin of a linear op's interval in IBP (`node_interval`): of ``|L|`` applied to its
inputs' magnitudes plus the result's size. A sum of up to ~1e4 float64 terms rounds by at most ~1e4 ulps of
the sum of their magnitudes, whatever the result: a linear map of an exp over a wide box (terms of 1e101,
true lower bound -188) had its lower bound computed as exactly 0 (centre minus radius, both 9e100). The ops'
own intervals stay exact (`gridverify.bab.tighten` reads coefficients off them). Forward mode widens its
linear forms by the same (`gridverify.bounds.forward`)."""


def _magnitude(op: OpDef, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], kw: dict[str, Any]) -> Tensor:
    """``|L| m`` for the inputs' magnitudes ``m = max(|lo|, |hi|)``: the op's ``abs_linear``, else the upper
    end of its interval over ``[-m, m]`` less its constant term."""
    mags = tuple(torch.maximum(lo.abs(), up.abs()) for lo, up in zip(lows, ups))
    if op.abs_linear is not None:
        return op.abs_linear(*mags, **kw).abs()
    origin = op.forward(*(torch.zeros_like(m) for m in mags), **kw)
    return (op.interval(tuple(-m for m in mags), mags, **kw)[1] - origin).abs()  # type: ignore[misc]


def describe(graph: Graph, i: int) -> str:
    node: Node = graph.nodes[i]
    label = f" {node.name!r}" if node.name else ""
    return f"node {i}{label} ({node.op}, shape {node.shape})"


@dataclass(frozen=True)
class Plan:
    """Which nodes a target depends on, and which of them get back-substituted (CROWN) bounds."""

    needed: frozenset[int]
    crown_nodes: tuple[int, ...]
    ancestors: dict[int, frozenset[int]]


def make_plan(graph: Graph, target: int) -> Plan:
    """Nodes whose intervals feed a relaxation get bounds; those produced by mixing ops (linear maps,
    sums, products) get CROWN bounds, the rest (inputs, structural ops, elementwise outputs) IBP, which is
    exact per neuron given their inputs' intervals."""
    needed = frozenset(graph.ancestors(target))
    wanted: set[int] = set()
    for i in sorted(needed, reverse=True):
        node = graph.nodes[i]
        kind = get_op(node.op).kind
        if kind == "fused":
            raise ValueError(f"{describe(graph, i)} is fused: bound lower_fused(graph) instead")
        if kind == "nonlinear" or (i in wanted and kind == "linear" and not get_op(node.op).mixes):
            wanted.update(node.inputs)
    crown = tuple(sorted(i for i in wanted if get_op(graph.nodes[i].op).mixes and i != target))
    ancestors = {i: frozenset(graph.ancestors(i)) for i in (*crown, target)}
    return Plan(needed, crown, ancestors)

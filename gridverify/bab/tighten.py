"""Tightening the intervals a bound hinges on: branch and bound on the outputs of the piecewise-linear part.

CROWN bounds an intermediate neuron with one linear relaxation of everything upstream of it. When a wide relu
network feeds a few smooth ops (an ACOPF surrogate: an MLP whose outputs feed sigmoid, sin, cos and
products), those intervals can be 10-20x the neuron's true range (ml4acopf 118 prop2: the angle difference
of branch 101 certified in [-0.18, 0.22] rad, sampled in [0.048, 0.056]), and no split of the smooth ops
recovers what the interval lost: their relaxations are exact only on the box of their inputs.

The *boundary neurons* of a specification are the neurons it needs (`needed_neurons`) of nodes bounded by
CROWN (linear maps, sums, products) that depend on relu or abs and on no other nonlinearity, and that reach
an op other than relu / abs through one-to-one ops. The interval ends that move the specification's bound
(`tighten`) are maximised or minimised over the box by branch and bound on the graph cut at their node
(relu splits with refreshed intermediate intervals), nodes in topological order, each search starting from
the intervals tightened so far. Every result is a certified bound over the whole box, so the tightened
intervals may replace CROWN's for any domain of the box (`maximise(..., base=...)`).

`gridverify.bab.lp_tighten` bounds the same neurons once per box for all rows by the LP relaxation of the
relu network (what `gridverify verify` does before its screen). Neither dominates (bench/lp_tighten.py):
the LP is tighter at equal time where many neurons are wanted (case14: median width 2.96 in 1.4 s against
3.45 in 3.6 s here), the search where few are (ml4acopf 118 prop2, theta: 0.34 here, 0.36 by LP at best).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from gridverify.bab.config import SearchConfig
from gridverify.bab.domains import Problem
from gridverify.bab.verdict import SpecResult
from gridverify.bounds.core import Interval
from gridverify.bounds.crown import crown, needed_neurons
from gridverify.deadline import Deadline
from gridverify.ops import get_op


def boundary_neurons(problem: Problem, spec: Tensor) -> dict[int, Tensor]:
    """node -> flat indices of the boundary neurons of the rows of ``spec`` (see the module docstring)."""
    graph, plan, out = problem.graph, problem.plan, problem.output
    c = spec.reshape(1, spec.shape[0], *graph.nodes[out].shape)
    needed = needed_neurons(graph, plan, out, c)
    if not needed:
        return {}
    kinked, smooth = _dependence(problem)
    feeds = _feeds_smooth(problem)
    found: dict[int, Tensor] = {}
    for z, mask in needed.items():
        users = [graph.nodes[i].op for i in plan.needed if z in graph.nodes[i].inputs]
        if z == out or all(get_op(op).kink_at_zero for op in users):
            continue
        rows = mask.nonzero().squeeze(1)
        keep = (kinked[z] & ~smooth[z] & feeds[z])[rows.cpu()]
        if bool(keep.any()):
            found[z] = rows[keep.to(rows.device)]
    return found


def _dependence(problem: Problem) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Per needed node, flat bool masks (numel,) on the CPU: whether each neuron depends on a relu / abs
    (``kinked``) and on any other nonlinear op (``smooth``) upstream of it, its own op left out. One
    forward pass of flags: a linear op passes a flag from an input neuron to every output neuron whose
    coefficient on it is nonzero (its interval over ``[-f, f]`` has width ``2 |L| f``); an elementwise
    op passes its inputs' flags, broadcast; an op that mixes neurons nonlinearly passes any flag to all."""
    graph = problem.graph
    value_k: dict[int, Tensor] = {}  # flags of each node's value, its own op included
    value_s: dict[int, Tensor] = {}
    up_k: dict[int, Tensor] = {}
    up_s: dict[int, Tensor] = {}
    for i in sorted(problem.plan.needed):
        node = graph.nodes[i]
        op = get_op(node.op)
        if op.kind == "leaf":
            k = s = torch.zeros(node.shape, dtype=torch.bool)
        elif op.kind == "linear":
            k, s = (_through_linear(problem, i, flags) for flags in (value_k, value_s))
        else:
            k, s = (_through_nonlinear(problem, i, flags) for flags in (value_k, value_s))
        up_k[i], up_s[i] = k.reshape(-1), s.reshape(-1)
        own = op.kind == "nonlinear"
        value_k[i] = k | (own and op.kink_at_zero)
        value_s[i] = s | (own and not op.kink_at_zero)
    return up_k, up_s


def _through_linear(problem: Problem, i: int, flags: dict[int, Tensor]) -> Tensor:
    node = problem.graph.nodes[i]
    like = problem.lower
    ups = tuple(flags[j].to(like).unsqueeze(0) for j in node.inputs)
    interval = get_op(node.op).interval
    if interval is None:  # no interval to read the coefficients from: every output may depend on any flag
        return torch.full(node.shape, any(bool(f.any()) for f in ups))
    lo, hi = interval(tuple(-u for u in ups), ups, **node.kwargs)
    return (hi - lo).reshape(node.shape).ne(0).cpu()


def _through_nonlinear(problem: Problem, i: int, flags: dict[int, Tensor]) -> Tensor:
    node = problem.graph.nodes[i]
    found = torch.zeros(node.shape, dtype=torch.bool)
    for j in node.inputs:
        f = flags[j]
        try:
            found |= bool(f.any()) if get_op(node.op).mixes else f.expand(node.shape)
        except RuntimeError:  # not a broadcast: any flag to every output
            found |= bool(f.any())
    return found


def _feeds_smooth(problem: Problem) -> dict[int, Tensor]:
    """Per needed node, a flat bool mask (numel,) on the CPU: whether each neuron reaches an input of a
    nonlinear op other than relu / abs through one-to-one ops only (gather, concat, reshape, scale, ...:
    linear ops that mix no neurons). A neuron that reaches the smooth ops only through another linear
    combination (the voltage angles of a branch's two ends, through their difference) is left to that
    combination's own node. One backward pass of flags (vector-Jacobian products of the one-to-one ops)."""
    graph = problem.graph
    like = problem.lower
    hit = {i: torch.zeros(graph.nodes[i].size, dtype=torch.bool) for i in problem.plan.needed}
    for i in sorted(problem.plan.needed, reverse=True):
        node = graph.nodes[i]
        op = get_op(node.op)
        mine = hit[i]
        if op.kind == "nonlinear" and not op.kink_at_zero:
            for j in node.inputs:
                hit[j] |= True
        if op.kind != "linear" or op.mixes or not bool(mine.any()):
            continue
        with torch.enable_grad():
            primals = [like.new_zeros((1, *graph.nodes[j].shape), requires_grad=True) for j in node.inputs]
            y = op.forward(*primals, **node.kwargs)
            grads = torch.autograd.grad(
                y, primals, grad_outputs=mine.to(like).reshape(1, *node.shape).expand_as(y), allow_unused=True
            )
        for j, g in zip(node.inputs, grads):
            if g is not None:
                hit[j] |= g.reshape(-1).ne(0).cpu()
    return hit


def tighten(
    problem: Problem,
    spec: Tensor,
    base: tuple[Interval | None, ...] | None,
    search: SearchConfig,
    budget_s: float,
    max_neurons: int,
    maximise: Callable[..., list[SpecResult]],
) -> tuple[Interval | None, ...] | None:
    """Intervals with the boundary neurons of ``spec`` tightened within ``budget_s`` seconds (intersected
    with ``base``); None when there is nothing to tighten or more than ``max_neurons`` neurons.

    Only the interval ends that matter are searched: each end is moved halfway toward the range sampled on
    the box, CROWN bounds the specification once per such move (one batched pass), and the ends whose move
    lowers the bound by at least a fifth of the best move's gain get the time, each node's search a fixed
    share of ``budget_s`` in proportion to its ends (all ends when no move helps), so one node's overrun
    does not starve the next (the whole may end up to half over ``budget_s``). ``maximise``
    (`gridverify.bab.maximise.maximise`, passed in: it calls this function) runs each end's search."""
    targets = boundary_neurons(problem, spec)
    total = sum(int(r.numel()) for r in targets.values())
    if total == 0 or total > max_neurons:
        return None
    start = time.monotonic()
    graph = problem.graph
    intervals: list[Interval | None] = list(base) if base is not None else [None] * len(graph.nodes)
    ends, _, _ = _ends_that_matter(problem, spec, base, targets)
    count = sum(len(e) for e in ends.values())
    box = (problem.lower, problem.upper)
    for z in sorted(ends):
        if time.monotonic() - start >= 1.5 * budget_s:
            break
        rows = torch.tensor([j for j, _ in ends[z]], device=spec.device)
        sides = torch.tensor([side for _, side in ends[z]], dtype=spec.dtype, device=spec.device)
        c = torch.zeros(rows.numel(), graph.nodes[z].size, dtype=spec.dtype, device=spec.device)
        c[torch.arange(rows.numel()), rows] = sides
        share = budget_s * rows.numel() / count  # a fixed share: a search that overruns starves no other
        cut = replace(graph, outputs=(("boundary", z),))  # a named output, for the attack
        # the target's own interval stays out of its search: every domain's bound would be clipped to it,
        # hiding which domains are worst until all of them are below it
        own = tuple(None if i == z else iv for i, iv in enumerate(intervals))
        cfg, until = _for_bounds(search), Deadline.after(share)
        ended = maximise(cut, box, c, output="boundary", config=cfg, base=own, deadline=until)
        # float64 from the start: a float32 tensor would round a certified bound down (0.7 -> 0.69999999)
        found = torch.tensor([r.upper for r in ended], dtype=torch.float64).to(
            dtype=spec.dtype, device=spec.device
        )
        inf = torch.full_like(found, torch.inf)
        hi, lo = torch.where(sides > 0, found, inf), torch.where(sides < 0, -found, -inf)
        intervals[z] = _narrowed(intervals[z], graph.nodes[z].shape, rows, lo, hi, spec)
    return tuple(intervals)


BOUND_ATTACK_SHARE = (0.01, 0.02, 0.05)


def _for_bounds(search: SearchConfig) -> SearchConfig:
    """The search of one node's interval ends: only its certified bound is used, so the falsifier gets the
    smallest share (its worst found only tells when to stop early). The root keeps its alpha steps: the
    children inherit its alphas (ml4acopf 118 prop2, theta's upper end in 15 s: 0.236 with 5 steps, 0.190
    with 20)."""
    return replace(search, tighten=None, refresh_intermediate=True, attack_share=BOUND_ATTACK_SHARE)


def tighten_first(
    problem: Problem,
    spec: Tensor,
    threshold: Tensor,
    base: tuple[Interval | None, ...] | None,
    targets: dict[int, Tensor],
) -> bool:
    """Whether the boundary intervals are what keeps every row of ``spec`` open, so tightening should come
    before any search: CROWN's bound proves no row (``c . y <= threshold``) with the intervals as they
    are, and every row once each boundary neuron's interval is cut to the range sampled on the box (what
    tightening reaches at best; a search on the smooth ops cannot make up for wide boundary intervals).
    ml4acopf 118 prop2: CROWN's bound 62 against a threshold of 0.079, proved with the sampled ranges.
    ``targets``: `boundary_neurons` of ``spec`` (the caller has them)."""
    if not targets:
        return False
    _, root, hopeful = _ends_that_matter(problem, spec, base, targets)
    thr = threshold.to(root)
    return bool((root[0] >= thr).all() and (hopeful < thr).all())


def _ends_that_matter(
    problem: Problem, spec: Tensor, base: tuple[Interval | None, ...] | None, targets: dict[int, Tensor]
) -> tuple[dict[int, list[tuple[int, float]]], Tensor, Tensor]:
    """node -> [(neuron, +1 upper end / -1 lower end)] worth a search (see `tighten`); CROWN's (1, m)
    bound of the rows with the intervals as they are, and its (m,) bound with every boundary neuron cut
    to its sampled range."""
    graph, box = problem.graph, (problem.lower, problem.upper)
    root = crown(graph, box, problem.output, spec, base=base)
    gen = torch.Generator().manual_seed(0)  # the same choice on every run
    u = torch.rand(256, *problem.lower.shape[1:], dtype=problem.lower.dtype, generator=gen)
    x = problem.lower + (problem.upper - problem.lower) * u.to(problem.lower.device)
    values = graph.forward(x, keep_all=True)
    moves: list[tuple[int, int, float]] = []
    lows: dict[int, list[Tensor]] = {}
    highs: dict[int, list[Tensor]] = {}
    for z, rows in targets.items():
        lo, hi = _first(root.intervals[z])
        seen = values[z].reshape(values[z].shape[0], -1)[:, rows]
        for k, j in enumerate(rows.tolist()):
            for side in (1.0, -1.0):
                new_lo, new_hi = lo.clone(), hi.clone()
                if side > 0:
                    new_hi[j] = 0.5 * (hi[j] + seen[:, k].max())
                else:
                    new_lo[j] = 0.5 * (lo[j] + seen[:, k].min())
                moves.append((z, j, side))
                for target in targets:
                    base_lo, base_hi = _first(root.intervals[target])
                    lows.setdefault(target, []).append(new_lo if target == z else base_lo)
                    highs.setdefault(target, []).append(new_hi if target == z else base_hi)
    for z, rows in targets.items():  # the last batch entry: every boundary neuron at its sampled range
        lo, hi = _first(root.intervals[z])
        seen = values[z].reshape(values[z].shape[0], -1)[:, rows]
        lo, hi = lo.clone(), hi.clone()
        lo[rows], hi[rows] = (
            torch.maximum(lo[rows], seen.min(0).values),
            torch.minimum(hi[rows], seen.max(0).values),
        )
        lows[z].append(lo)
        highs[z].append(hi)
    n = len(moves) + 1
    batched = list(root.intervals)
    for z in targets:
        shape = graph.nodes[z].shape
        batched[z] = (torch.stack(lows[z]).reshape(n, *shape), torch.stack(highs[z]).reshape(n, *shape))
    wide = (
        problem.lower.expand(n, *problem.lower.shape[1:]),
        problem.upper.expand(n, *problem.upper.shape[1:]),
    )
    moved = crown(graph, wide, problem.output, spec, base=tuple(batched)).upper
    moved, hopeful = moved[:-1], moved[-1]
    gain = (root.upper - moved).clamp(min=0).sum(1)
    best = float(gain.max())
    chosen = [m for m, g in zip(moves, gain.tolist()) if best <= 0 or g >= 0.2 * best]
    out: dict[int, list[tuple[int, float]]] = {}
    for z, j, side in chosen:
        out.setdefault(z, []).append((j, side))
    return out, root.upper, hopeful


def _first(iv: Interval | None) -> tuple[Tensor, Tensor]:
    """The first box's ends of a boundary neuron's interval, flat (CROWN bounds every boundary neuron)."""
    if iv is None:
        raise ValueError("a boundary neuron without an interval")
    return iv[0][:1].reshape(-1), iv[1][:1].reshape(-1)


def _narrowed(
    iv: Interval | None, shape: tuple[int, ...], rows: Tensor, lo: Tensor, hi: Tensor, like: Tensor
) -> Interval:
    """``iv`` (unbounded where None) with neurons ``rows`` intersected with [lo, hi]; shapes (1, *shape)."""
    if iv is None:
        full = torch.full((1, *shape), torch.inf, dtype=like.dtype, device=like.device)
        iv = (-full, full)
    new_lo, new_hi = iv[0][:1].clone().reshape(1, -1), iv[1][:1].clone().reshape(1, -1)
    for j, a, b in zip(rows.tolist(), lo, hi):  # a neuron may come twice (its two ends)
        new_lo[0, j], new_hi[0, j] = torch.maximum(new_lo[0, j], a), torch.minimum(new_hi[0, j], b)
    return new_lo.reshape(1, *shape), new_hi.reshape(1, *shape)

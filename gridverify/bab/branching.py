"""Where to branch: a neuron (GenBaB, chosen by BBPS or by width) or an input dimension, and at which point.

BBPS (Shi et al. 2024) estimates, for every candidate neuron j of a node z feeding relaxed ops h, how much a
split would raise the domain's lower bound of ``g = -c^T y``. With ``L`` the coefficient of h's output in
the domain's last bound, the relaxation of neuron j passes ``L+ lw + L- uw`` to each input of h and adds
``L+ lb + L- ub``; the input's root linear bounds (``W_L x + b_L <= z <= W_U x + b_U``, from the root CROWN
pass) carry it to the graph input. Summing over the neurons gives an estimate ``E`` of the bound; replacing
neuron j's terms by those of its relaxation on one branch gives ``E'_jk``; the score is ``min_k E'_jk - E``.
Split points: 0 for relu, leaky relu and abs inputs whose interval contains 0; otherwise the pre-optimised
point of the consumer's table (`gridverify.bab.split_points`; for products the midpoint, see `split_point`)
or the midpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridverify.bab import split_points
from gridverify.bab.bound import Bounded
from gridverify.bab.domains import Problem
from gridverify.bounds.core import Interval, known
from gridverify.ops import Relaxation, get_op

RootLinear = dict[int, tuple[Tensor, Tensor, Tensor, Tensor]]
"""node -> (W_L, b_L, W_U, b_U): W (1, *S, n_in), b (1, *S): linear bounds of the node over the root box."""


@dataclass(frozen=True)
class Choice:
    """Per domain: the node (-1 for an input split), the flat neuron (or input) index, and the point."""

    node: Tensor
    index: Tensor
    point: Tensor


def split_point(problem: Problem, z: int, lower: Tensor, upper: Tensor, tables: bool = True) -> Tensor:
    """0 where a relu / abs input interval contains 0; else the table's point or the midpoint.

    Products: McCormick's envelope of ``x y`` is exact up to affine terms under shifts of x and y, so its
    gap volume over a box depends on the widths only and grows like ``width_x^2``; the area-optimal split
    of one factor is therefore its midpoint on every range (the product's "table"). Without tables, a
    factor straddling 0 splits at 0 (sign-definite children), the rule of the GenBaB paper."""
    ops = [problem.graph.nodes[h].op for h, _ in problem.consumers[z]]
    point = 0.5 * (lower + upper)
    tabulated = [op for op in ops if op in split_points.tabulated_ops()]
    if tables and tabulated:
        point = split_points.lookup(split_points.table(tabulated[0]), lower, upper)
    if any(get_op(op).kink_at_zero or (not tables and op == "mul") for op in ops):
        point = torch.where((lower < 0) & (upper > 0), torch.zeros_like(point), point)
    return point


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def _input_bounds(
    problem: Problem, iv: tuple[Interval | None, ...], h: int
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    node = problem.graph.nodes[h]
    return tuple(known(iv[k])[0] for k in node.inputs), tuple(known(iv[k])[1] for k in node.inputs)


def _lines(
    problem: Problem, h: int, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor | None
) -> Relaxation:
    node = problem.graph.nodes[h]
    op = get_op(node.op)
    a = op.init_alpha(lows, ups, **node.kwargs) if alpha is None else alpha[:, :, 0]
    return op.relaxation(lows, ups, a, **node.kwargs)


def _shortcut(
    problem: Problem, h: int, lam: Tensor, r: Relaxation, root: RootLinear, iv: tuple[Interval | None, ...]
) -> tuple[Tensor, Tensor]:
    """Per neuron of h: coefficient on the graph input (B, n_h, n_in) and constant (B, n_h)."""
    pos, neg = lam.clamp(min=0), lam.clamp(max=0)
    const = _flat(pos * r.lb + neg * r.ub).expand(lam.shape[0], -1)
    coeff: Tensor | float = 0.0
    for k, j in enumerate(problem.graph.nodes[h].inputs):
        passed = _flat((pos * r.lw[k] + neg * r.uw[k]).expand_as(lam))
        w_l, b_l, w_u, b_u = root.get(j) or _constant_bounds(known(iv[j]), problem.lower)
        p, n = passed.clamp(min=0), passed.clamp(max=0)
        coeff = coeff + p.unsqueeze(-1) * _per_neuron(w_l) + n.unsqueeze(-1) * _per_neuron(w_u)
        const = const + p * _flat(b_l) + n * _flat(b_u)
    return coeff, const  # type: ignore[return-value]


def _per_neuron(w: Tensor) -> Tensor:
    """Root coefficients (b, *S, n_in) as (b, numel(S), n_in); a 0-d node (S = ()) has one neuron."""
    return w.reshape(w.shape[0], -1, w.shape[-1])


def _constant_bounds(iv: Interval, like: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    lo, hi = iv
    zeros = lo.new_zeros((*lo.shape, like[0].numel()))
    return zeros, lo, zeros, hi


def _minimise(coeff: Tensor, const: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """min over the input box of coeff . x + const; coeff (..., n_in), lower/upper (B, n_in)."""
    shape = (lower.shape[0],) + (1,) * (coeff.ndim - 2) + (lower.shape[-1],)
    lo, hi = lower.reshape(shape), upper.reshape(shape)
    return (coeff.clamp(min=0) * lo + coeff.clamp(max=0) * hi).sum(-1) + const


def bbps_scores(problem: Problem, b: Bounded, root: RootLinear, tables: bool = True) -> dict[int, Tensor]:
    """Score (B, numel(z)) per split node z: the estimated gain of the worse branch (-inf: not splittable)."""
    d = b.domains
    lower, upper = _flat(d.lower), _flat(d.upper)
    scores = {}
    for z, uses in problem.consumers.items():
        lo_z, hi_z = d.intervals[z]  # type: ignore[misc]
        point = split_point(problem, z, lo_z, hi_z, tables)
        gains = []
        for h, k in uses:
            if problem.graph.nodes[h].shape != problem.graph.nodes[z].shape or h not in b.coeffs:
                continue
            gains.append(_gain(problem, b, root, h, k, point, (lower, upper)))
        total = torch.stack(gains).sum(0) if gains else _width_score(problem, b, z)
        scores[z] = torch.where(_flat(hi_z - lo_z) > 1e-12, total, torch.full_like(total, -torch.inf))
    return scores


def _gain(
    problem: Problem, b: Bounded, root: RootLinear, h: int, k: int, point: Tensor, box: tuple[Tensor, Tensor]
) -> Tensor:
    d, lam = b.domains, b.coeffs[h]
    lows, ups = _input_bounds(problem, d.intervals, h)
    before = _shortcut(problem, h, lam, _lines(problem, h, lows, ups, None), root, d.intervals)
    total_coeff, total_const = before[0].sum(1), before[1].sum(1)
    base = _minimise(total_coeff, total_const, *box)
    worst = None
    for side in (0, 1):
        lows_k, ups_k = list(lows), list(ups)
        if side == 0:
            ups_k[k] = torch.minimum(ups[k], point)
        else:
            lows_k[k] = torch.maximum(lows[k], point)
        after = _shortcut(
            problem, h, lam, _lines(problem, h, tuple(lows_k), tuple(ups_k), None), root, d.intervals
        )
        coeff = total_coeff.unsqueeze(1) - before[0] + after[0]
        const = total_const.unsqueeze(1) - before[1] + after[1]
        est = _minimise(coeff, const, *box) - base.unsqueeze(1)
        worst = est if worst is None else torch.minimum(worst, est)
    return worst  # type: ignore[return-value]


def _width_score(problem: Problem, b: Bounded, z: int) -> Tensor:
    """Width times (1 + |coefficient|) of each consumer's output, summed over the consumers that a split
    can tighten (a relu or abs consumer only while its input interval straddles 0)."""
    d = b.domains
    lo, hi = d.intervals[z]  # type: ignore[misc]
    straddles = (lo < 0) & (hi > 0)
    total = torch.zeros_like(lo)
    for h, _ in problem.consumers[z]:
        lam = b.coeffs.get(h)
        weight = 1.0 + lam.abs() if lam is not None and lam.shape == lo.shape else torch.ones_like(lo)
        if get_op(problem.graph.nodes[h].op).kink_at_zero:
            weight = weight * straddles
        total = total + weight
    return _flat((hi - lo) * total)


def width_scores(problem: Problem, b: Bounded) -> dict[int, Tensor]:
    """The simple heuristic: interval width times consumer coefficient magnitude."""
    return {z: _width_score(problem, b, z) for z in problem.consumers}


def with_width_fallback(
    problem: Problem, b: Bounded, scores: dict[int, Tensor], floor: float
) -> dict[int, Tensor]:
    """BBPS scores, except in domains where no neuron's estimated gain exceeds ``floor`` (BBPS sees no
    progress anywhere, e.g. deep in the tree where the root's shortcuts are loose): there width scores,
    so that the search keeps narrowing the widest relaxations instead of splitting on noise."""
    best = torch.stack([s.amax(1) for s in scores.values()], 1).amax(1)
    stuck = (best <= floor).unsqueeze(1)
    width = width_scores(problem, b)
    return {z: torch.where(stuck & torch.isfinite(s), width[z], s) for z, s in scores.items()}


def choose_neuron(problem: Problem, scores: dict[int, Tensor]) -> tuple[Tensor, Tensor]:
    """Best (node, flat index) per domain over all split nodes."""
    nodes = sorted(scores)
    best = torch.stack([scores[z].amax(1) for z in nodes], 1)  # amax: max(1) is slow on busy cores
    which = best.argmax(1)
    index = torch.stack([scores[z].argmax(1) for z in nodes], 1).gather(1, which.unsqueeze(1)).squeeze(1)
    return torch.tensor(nodes, device=which.device)[which], index


ASPECT = 2.0
"""Input splits: a dimension is split only while its width (relative to the root box) is at least
``1 / ASPECT`` of the domain's widest (`choose_input`)."""


def choose_input(b: Bounded, root_width: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per domain: the input dimension with the largest |coefficient| x width among those at least
    ``1 / ASPECT`` as wide as the widest (widths relative to ``root_width``, the root box's), and its
    midpoint. The coefficient (the last bound's linear function of the input) sees only how the final
    line varies, not how the box's width loosens the intermediate bounds (unstable relus) below it:
    alone it kept halving one dimension of the cGAN boxes (4 free inputs: 0.717 after 60 s against 0.348
    with the aspect cap, threshold 0.338), so no box gets more than ``2 ASPECT`` times longer than wide."""
    d = b.domains
    width = _flat(d.upper - d.lower)
    rel = width
    if root_width is not None:
        root = _flat(root_width).to(width)
        rel = torch.where(root > 0, width / torch.where(root > 0, root, 1.0), torch.zeros_like(width))
    wide = rel * ASPECT >= rel.amax(1, keepdim=True) * (1 - 1e-9)
    score = (_flat(b.input_coeff).abs() * width + 1e-9 * width) * wide
    dim = score.argmax(1)
    mid = 0.5 * (_flat(d.lower) + _flat(d.upper)).gather(1, dim.unsqueeze(1)).squeeze(1)
    return dim, mid

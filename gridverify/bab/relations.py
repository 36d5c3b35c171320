"""Relations between the neurons of one node, kept through branch and bound.

A surrogate's outputs that feed the same smooth op family move together: the pre-sigmoid voltage angles
of a branch's two ends ``z_f``, ``z_t`` each range over [-3, 3] on case118's region, but ``z_f - z_t``
over an interval a hundred times narrower. Intervals forget that. A domain that splits ``z_f`` to
[0.1, 0.4] keeps ``z_t`` at [-3, 3], so the sigmoid of ``z_t`` stays relaxed on the whole range, the angle
difference ``s (sigmoid(z_f) - sigmoid(z_t))`` keeps its root interval, and the search plateaus (case118
thermal_from[branch 3: 4-5]: certified 23.9 pu^2 after 20186 domains, nothing found above 0).

A *relation* is a certified interval of ``z_k - g z_j`` over the whole box (CROWN at the root, ``g`` the
least-squares ratio of the two neurons' input gradients scaled by the box's radii). On every domain it
turns the interval of ``z_j`` into one for ``z_k``:

    z_k = (z_k - g z_j) + g z_j  in  [D_lo, D_hi] + g [lo_j, hi_j],

sound on any sub-box of the box and under any split (the domain's interval of ``z_j`` holds on it), and
rounded outward. Applied before each bound, twice (chains of relations), it narrows the partners of every
split neuron; a domain whose narrowed interval is empty has no input (its bound is -inf,
`gridverify.bab.bound`), which prunes the off-diagonal pieces of a joint split of ``z_f`` and ``z_t``.

Relations are kept between the neurons of the nodes that feed relaxed ops (the search's split nodes) and
are computed by linear maps, the pairs whose relation is at most half as wide as the
neuron's own interval, at most ``PARTNERS`` partners per neuron (the narrowest relations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridverify.bab.domains import Problem
from gridverify.bounds.core import Interval
from gridverify.bounds.crown import final_bounds, node_relaxer
from gridverify.ir.graph import Graph
from gridverify.ops import get_op

PARTNERS = 4
"""Partners per neuron, up to this many: the narrowest relations among its ``CANDIDATES`` best-aligned
neurons (cosine of the input gradients)."""
CANDIDATES = 32
MAX_NEURONS = 2048
"""A node with more split neurons than this keeps no relations (its pairs would not fit one CROWN pass)."""
MAX_ENTRIES = 2**24
"""Nor does a node whose neurons times the neurons upstream of it exceed this (the input gradients and the
relations' CROWN pass hold about that many floats: on cGAN 32 the nodes behind the convolutions took GBs
and most of a 60 s budget)."""
ALIGNED = 0.9
"""Smallest |cosine| between two neurons' input gradients (scaled by the box) for a relation."""


@dataclass(frozen=True)
class NodeRelations:
    """Relations of one node: ``z_k - gamma z_j in [lo, hi]`` for the flat neuron pairs ``(k, j)``."""

    k: Tensor  # (P,) int64
    j: Tensor  # (P,) int64
    gamma: Tensor  # (P,) float64
    lo: Tensor  # (P,)
    hi: Tensor  # (P,)

    def apply(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """``(lo, hi)`` (B, *S) narrowed by the relations, rounded outward."""
        shape = lo.shape
        flat_lo, flat_hi = lo.reshape(shape[0], -1), hi.reshape(shape[0], -1)
        g = self.gamma.to(lo)
        a, b = g * flat_lo[:, self.j], g * flat_hi[:, self.j]
        low = self.lo.to(lo) + torch.minimum(a, b)
        high = self.hi.to(lo) + torch.maximum(a, b)
        # each candidate end is two roundings (a product and a sum) off: widen by 4 ulp of its terms
        terms = self.lo.to(lo).abs() + self.hi.to(lo).abs() + a.abs() + b.abs()
        slack = 4 * torch.finfo(lo.dtype).eps * terms
        low, high = low - slack, high + slack
        ok = torch.isfinite(low) & torch.isfinite(high)
        low = torch.where(ok, low, torch.full_like(low, -torch.inf))
        high = torch.where(ok, high, torch.full_like(high, torch.inf))
        k = self.k.expand(shape[0], -1)
        new_lo = flat_lo.scatter_reduce(1, k, low, "amax", include_self=True)
        new_hi = flat_hi.scatter_reduce(1, k, high, "amin", include_self=True)
        return new_lo.reshape(shape), new_hi.reshape(shape)


@dataclass(frozen=True)
class Relations:
    """A search's relations, per node, and its cut nodes: the related nodes every path from the input to
    the output passes through (only constants join the graph below them; `cut_nodes`)."""

    nodes: dict[int, NodeRelations]
    cuts: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.nodes)


NONE = Relations({})


def apply_relations(
    relations: Relations, intervals: tuple[Interval | None, ...]
) -> tuple[Interval | None, ...]:
    """``intervals`` with every related node narrowed, two rounds."""
    if not relations:
        return intervals
    out = list(intervals)
    for _ in range(2):
        for z, rel in relations.nodes.items():
            iv = out[z]
            if iv is not None:
                out[z] = rel.apply(*iv)
    return tuple(out)


def find_relations(problem: Problem, intervals: tuple[Interval | None, ...]) -> Relations:
    """The relations worth keeping among the neurons of the problem's split nodes that are linear maps
    (see the module docstring); ``intervals``: the root's (first box), which the relations must beat."""
    graph = problem.graph
    found: dict[int, NodeRelations] = {}
    for z in problem.split_nodes:
        node = graph.nodes[z]
        iv = intervals[z]
        if iv is None or get_op(node.op).kind != "linear" or not 2 <= node.size <= MAX_NEURONS:
            continue
        upstream = sum(graph.nodes[i].size for i in graph.ancestors(z))
        if node.size * upstream > MAX_ENTRIES:
            continue
        rel = _node_relations(problem, z, intervals)
        if rel is not None:
            found[z] = rel
    return Relations(found, cut_nodes(problem, found))


def cut_nodes(problem: Problem, nodes: dict[int, NodeRelations]) -> tuple[int, ...]:
    """The related ``nodes`` every path from the input to the output passes through (only constants join
    the graph below them). A domain's bound is also its linear bound as a function of such a node,
    minimised over the node's interval on the domain: split and related neurons narrow that interval, so
    the bound sees what the split constraints say without their multipliers (whose optimisation converges
    slowly: case118 thermal_to[branch 182], whose angle difference is certified in [-0.047, 0.046] rad at
    the root and sampled in [-0.001, 0.001]). Which cut is best varies (the surrogate's output layer, once
    split; a later node whose relations are loose), so each domain takes the best of all of them
    (`gridverify.bab.bound`)."""
    graph, needed = problem.graph, problem.plan.needed
    found = []
    for k in sorted(nodes):
        joins = (j for i in needed if i > k for j in graph.nodes[i].inputs)
        if all(j >= k or graph.nodes[j].op == "const" for j in joins):
            found.append(k)
    return tuple(found)


def _node_relations(problem: Problem, z: int, intervals: tuple[Interval | None, ...]) -> NodeRelations | None:
    graph = problem.graph
    iv = intervals[z]
    assert iv is not None
    width = (iv[1][:1] - iv[0][:1]).reshape(-1)
    if not bool(torch.isfinite(width).all()):
        return None
    grad = _input_gradients(problem, z)  # (n, n_in), scaled by the box radii
    if grad is None:
        return None
    norm = grad.norm(dim=1)
    live = (norm > 0) & (width > 0)
    unit = grad / norm.clamp(min=1e-300)[:, None]
    cos = unit @ unit.T
    cos.fill_diagonal_(0.0)
    cos[~live] = 0.0
    cos[:, ~live] = 0.0
    # the best-aligned candidates by cosine, then the narrowest relations among them: the L1 norm of
    # grad_k - g grad_j is the width of z_k - g z_j's linear part over the box (all of a region's angles
    # are aligned; a branch's two ends are the ones whose difference is narrow)
    count = min(CANDIDATES, grad.shape[0] - 1)
    best, partner = cos.abs().topk(count, dim=1)
    k = torch.arange(grad.shape[0], device=grad.device)[:, None].expand_as(partner)
    gamma = (grad[k] * grad[partner]).sum(-1) / (grad[partner] * grad[partner]).sum(-1).clamp(min=1e-300)
    residual = (grad[k] - gamma[..., None] * grad[partner]).abs().sum(-1)
    residual = torch.where(best >= ALIGNED, residual, torch.full_like(residual, torch.inf))
    narrow, order = residual.topk(min(PARTNERS, count), dim=1, largest=False)
    keep = torch.isfinite(narrow)
    if not bool(keep.any()):
        return None
    k, j, gamma = k.gather(1, order)[keep], partner.gather(1, order)[keep], gamma.gather(1, order)[keep]
    n = graph.nodes[z].size
    c = torch.zeros(k.numel(), n, dtype=problem.lower.dtype, device=problem.lower.device)
    rows = torch.arange(k.numel(), device=c.device)
    c[rows, k] = 1.0
    c[rows, j] = -gamma
    # the root's intervals (every root domain has the same; their first row)
    first = [None if t is None else (t[0][:1], t[1][:1]) for t in intervals]
    box = {problem.input_name: (problem.lower, problem.upper)}
    spec = c.reshape(1, k.numel(), *graph.nodes[z].shape)
    lower, upper, _ = final_bounds(graph, box, z, spec, first, node_relaxer(graph))
    lo, hi = lower.reshape(-1), upper.reshape(-1)
    useful = (hi - lo < 0.5 * width[k]) & torch.isfinite(lo) & torch.isfinite(hi)
    if not bool(useful.any()):
        return None
    return NodeRelations(k[useful], j[useful], gamma[useful], lo[useful], hi[useful])


def _input_gradients(problem: Problem, z: int) -> Tensor | None:
    """(n, n_in): each neuron of node ``z``'s gradient with respect to the input at the box centre, times
    the box radii (so that a cosine compares how the two neurons move over the box); None where autograd
    cannot batch it (sparse weights upstream)."""
    graph = problem.graph
    ins = [i for _, i in graph.inputs]
    if max(ins) > z:  # z does not depend on the input
        return None
    upto = Graph(graph.nodes[: z + 1], graph.inputs, (("related", z),))  # only what z needs is evaluated
    centre = ((problem.lower + problem.upper) / 2).detach()
    radius = ((problem.upper - problem.lower) / 2).reshape(-1)
    try:
        with torch.enable_grad():
            jac: Tensor = torch.autograd.functional.jacobian(
                lambda x: upto.forward(x)["related"].reshape(-1), centre, vectorize=True
            )
    except RuntimeError:
        return None
    return jac.reshape(graph.nodes[z].size, -1) * radius[None]

"""Bounding a batch of domains: CROWN with per-domain alphas and beta-CROWN split multipliers.

For a domain with split constraints ``z_j >= l_j`` (multiplier ``b_lo``) and ``z_j <= u_j`` (``b_hi``), the
lower bound of ``g = -c^T y`` comes from

    min_x  g(x) - sum_j b_lo_j (z_j(x) - l_j) - sum_j b_hi_j (u_j - z_j(x)),       b_lo, b_hi >= 0,

which is at most ``min g`` over the domain for every feasible multiplier (the subtracted terms are >= 0
there). In the backward pass this adds ``-b_lo + b_hi`` to the coefficient of ``z_j`` and
``b_lo l_j - b_hi u_j`` to the bias. Alphas and betas are optimised jointly (projected Adam) and the best
bound per domain is kept. Intermediate intervals are the parent's (intersected with fresh IBP), or, when
asked (input splitting), recomputed by CROWN on the domain's box.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gridverify.bab.domains import Domains, Problem
from gridverify.bab.relations import Relations, apply_relations
from gridverify.bounds.core import Interval, Relaxer
from gridverify.bounds.crown import (
    Frontier,
    Visitor,
    backward,
    concretize,
    flat_sum,
    ibp_of_spec,
    needed_neurons,
    node_relaxer,
    propagate,
    safe_dot,
)
from gridverify.bounds.optim import ProjectedAdam
from gridverify.ops import get_op


@dataclass(frozen=True)
class BoundConfig:
    """Per-batch optimisation of alpha and beta (defaults near alpha-beta-CROWN's BaB settings)."""

    steps: int = 10
    lr_alpha: float = 0.05
    lr_beta: float = 0.05
    decay: float = 0.98
    refresh_intermediate: bool = False


@dataclass(frozen=True)
class Bounded:
    """Domains with updated bounds and parameters, plus what the branching heuristics read."""

    domains: Domains
    coeffs: dict[int, Tensor]  # coefficient of each nonlinear node's output in the last pass, (B, *S)
    input_coeff: Tensor  # coefficient of the graph input, (B, *S_in)
    frontier: Frontier | None = (
        None  # where the last pass entered the nodes asked for (`gridverify.bab.lp_cut`)
    )


def init_alpha(problem: Problem, intervals: tuple[Interval | None, ...]) -> dict[int, Tensor]:
    """CROWN's alpha for every optimisable relaxation the output depends on: (P, B, 1, *S_j)."""
    out = {}
    for j in sorted(problem.plan.ancestors[problem.output]):
        node = problem.graph.nodes[j]
        op = get_op(node.op)
        if op.kind == "nonlinear" and op.optimisable:
            lows = tuple(intervals[k][0] for k in node.inputs)  # type: ignore[index]
            ups = tuple(intervals[k][1] for k in node.inputs)  # type: ignore[index]
            out[j] = op.init_alpha(lows, ups, **node.kwargs).unsqueeze(2)
    return out


def _relaxer(problem: Problem, alphas: dict[int, Tensor], inherit: bool) -> Relaxer:
    """`node_relaxer` for branch and bound: the output's pass relaxes with the domains' alphas; every other
    pass (intermediate bounds, forward mode) uses kept lines, each node relaxed once per input interval,
    with the domain's alphas when ``inherit`` (any alpha is sound), else CROWN's default lines. Alphas the
    parent optimised (``BoundConfig.steps`` > 1) make far better intermediate bounds than the default
    lines: dist_shift index9192, 64 input-split boxes with 8 steps, largest bound 0.077 and 51 boxes
    settled against 1.42 and 41; alphas nobody optimised (1 step: the root's, on a wider box) make worse
    ones: cGAN 32 prop 3 after 120 s, 1.16 against 0.45."""
    out = problem.output

    def kept(i: int) -> Tensor | None:
        return alphas[i].detach().clone() if i in alphas else None

    return node_relaxer(
        problem.graph, lambda start, i: alphas.get(i) if start == out else None, kept if inherit else None
    )


def _fresh_alpha(
    problem: Problem, intervals: list[Interval | None], alphas: dict[int, Tensor]
) -> dict[int, Tensor]:
    """CROWN's default alpha of every optimisable node of ``alphas`` on the refreshed ``intervals``, in the
    alphas' shapes. For a domain whose alphas are not optimised (one step) but whose intermediate intervals
    are recomputed on its own box (input splits), the inherited alphas are the root's, chosen for the root's
    much wider intervals: on cGAN 32 prop 3 (64 children of the 32 worst open boxes after 20 s) CROWN's
    default on each child's own intervals lowered all 64 bounds (largest 0.498 -> 0.468, mean 0.381 ->
    0.363), and 3 or 6 alpha steps from there gained under 1e-4. Any alpha in [0, 1] is sound. Not for
    batches with neuron splits (`Domains.neuron_split`), which keep their inherited alphas as before."""
    fresh = init_alpha(problem, tuple(intervals))
    return {k: fresh[k].expand_as(v).clone() for k, v in alphas.items() if k in fresh}


def _visitor(
    d: Domains, betas: dict[str, dict[int, Tensor]], record: dict[int, Tensor], watch: set[int]
) -> Visitor:
    def visit(i: int, a: Tensor) -> tuple[Tensor, Tensor | None]:
        if i in watch:
            record[i] = a.detach()[:, 0]
        if i not in betas["lo"]:
            return a, None
        lo, hi = d.intervals[i]  # type: ignore[misc]
        b_lo = betas["lo"][i] * d.split_lo[i]
        b_hi = betas["hi"][i] * d.split_hi[i]
        gained = flat_sum((b_lo * lo - b_hi * hi).unsqueeze(1))
        return a - b_lo.unsqueeze(1) + b_hi.unsqueeze(1), gained

    return visit


def _params(d: Domains) -> tuple[dict[int, Tensor], dict[str, dict[int, Tensor]]]:
    alphas = {k: v.detach().clone().requires_grad_(True) for k, v in d.alpha.items()}
    betas = {
        "lo": {k: v.detach().clone().requires_grad_(True) for k, v in d.beta_lo.items()},
        "hi": {k: v.detach().clone().requires_grad_(True) for k, v in d.beta_hi.items()},
    }
    return alphas, betas


def _finite(t: Tensor) -> Tensor:
    """``t`` with its infinite or NaN entries (overflowed bounds) zeroed, so that they carry no gradient."""
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _empty(intervals: list[Interval | None], size: int) -> Tensor:
    """(B,) domains where some node's interval is empty (lower above upper beyond rounding): no input of
    the domain satisfies its split constraints, so nothing in it can reach any value (bound -inf). Splits
    narrow a neuron's interval; a refreshed interval of the same neuron can then lie beside it."""
    out = torch.zeros(size, dtype=torch.bool, device=next(iv[0] for iv in intervals if iv).device)
    for iv in intervals:
        if iv is None:
            continue
        lo, hi = iv
        gap = (lo - hi) > 1e-9 * (1.0 + lo.abs() + hi.abs())
        if gap.shape[0] == size:
            out |= gap.reshape(size, -1).any(1)
    return out


def _at_cuts(cuts: dict[int, tuple[Tensor, Tensor]], intervals: list[Interval | None]) -> Tensor | None:
    """(B,) the best over the cut nodes of the minimum of each linear bound ``cuts[k]`` (coefficients
    (B, 1, *S_k), bias (B, 1)) over the node's interval ``(B, *S_k)``; None without any."""
    best = None
    for k, (a, bias) in cuts.items():
        iv = intervals[k]
        if iv is None:
            continue
        lo, hi = iv
        pos, neg = a.clamp(min=0), a.clamp(max=0)
        value = (bias + safe_dot(pos, lo.unsqueeze(1)) + safe_dot(neg, hi.unsqueeze(1)))[:, 0]
        best = value if best is None else torch.maximum(best, value)
    return best


def bound_domains(
    problem: Problem,
    d: Domains,
    config: BoundConfig,
    relations: Relations | None = None,
    frontier: frozenset[int] | None = None,
) -> Bounded:
    """Certified upper bounds of ``spec . y`` on each domain (``Bounded.domains.bound``); ``relations``
    narrow the related neurons' intervals first (`gridverify.bab.relations`); the last pass's `Frontier`
    of the nodes ``frontier`` comes back with them."""
    graph, plan, out = problem.graph, problem.plan, problem.output
    if relations:
        d = replace(d, intervals=apply_relations(relations, d.intervals))
    box = {problem.input_name: (d.lower, d.upper)}
    alphas, betas = _params(d)
    record: dict[int, Tensor] = {}
    watch = {i for i in plan.needed if get_op(graph.nodes[i].op).kind == "nonlinear"}
    relaxer, visit = _relaxer(problem, alphas, config.steps > 1), _visitor(d, betas, record, watch)
    cut_at = relations.cuts if relations else ()
    crown_nodes = plan.crown_nodes if config.refresh_intermediate else ()
    c = -d.spec.reshape(d.size, 1, *graph.nodes[out].shape)
    params = [*alphas.values(), *betas["lo"].values(), *betas["hi"].values()]
    n_alpha = len(alphas)
    opt = ProjectedAdam(
        params,
        [config.lr_alpha] * n_alpha + [config.lr_beta] * (len(params) - n_alpha),
        config.decay,
        [(0.0, 1.0)] * n_alpha + [(0.0, None)] * (len(params) - n_alpha),
    )
    best = torch.full((d.size,), -torch.inf, dtype=d.lower.dtype, device=d.lower.device)
    intervals: list[Interval | None] = list(d.intervals)
    input_coeff = torch.zeros_like(d.lower)
    line = torch.full_like(best, torch.inf)
    entered: Frontier | None = None
    # Intermediate passes use CROWN's default lines (only the final pass has alpha and beta), so the
    # refreshed intervals do not change during the optimisation: computed once, for the needed neurons.
    masks = needed_neurons(graph, plan, out, c) if crown_nodes else None
    intervals, _ = propagate(
        graph, box, plan, relaxer, crown_nodes=crown_nodes, base=d.intervals, masks=masks
    )
    empty = _empty(intervals, d.size)
    intervals = [None if iv is None else (iv[0], torch.maximum(iv[0], iv[1])) for iv in intervals]
    # not for batches with neuron splits: a tightening search's filtering bounds its relu-split children
    # with one step and refreshed intervals, and their parents' optimised alphas fit them; not for
    # lean domains, which have no alphas (their lines are CROWN's default already)
    if alphas and crown_nodes and config.steps <= 1 and not d.neuron_split:
        alphas.update(_fresh_alpha(problem, intervals, alphas))
    out_lower = ibp_of_spec(c, intervals[out])[0][:, 0]  # type: ignore[arg-type]
    for step in range(max(config.steps, 1)):
        with torch.enable_grad():
            cuts: dict[int, tuple[Tensor, Tensor] | None] = dict.fromkeys(cut_at)
            entered = None if frontier is None else Frontier(frontier)
            found, bias = backward(graph, out, c, intervals, relaxer, visit, cuts, entered)
            lower = concretize(graph, found, bias, box)[:, 0]
            at_cut = _at_cuts({k: v for k, v in cuts.items() if v is not None}, intervals)
            both = lower if at_cut is None else torch.maximum(lower, at_cut.detach())
        # the optimiser follows the linear bound itself: intersected with the output's interval first, its
        # gradient would vanish wherever the interval is the better of the two (and alpha, beta stall there)
        best = torch.maximum(best, torch.maximum(both.detach(), out_lower))
        input_coeff = found[graph.input_ids[problem.input_name]].detach()[:, 0]
        line = -lower.detach()
        if step + 1 >= config.steps or not params:
            break
        opt.step(torch.autograd.grad(-_finite(lower).sum(), params, allow_unused=True))
    fresh = tuple(None if iv is None else (iv[0].detach(), iv[1].detach()) for iv in intervals)
    bound = torch.where(empty, torch.full_like(best, -torch.inf), torch.minimum(d.bound, -best))
    done = replace(
        d,
        bound=bound,
        intervals=fresh,
        alpha={k: v.detach() for k, v in alphas.items()},
        beta_lo={k: v.detach() for k, v in betas["lo"].items()},
        beta_hi={k: v.detach() for k, v in betas["hi"].items()},
        coeffs=record,
        input_coeff=input_coeff,
        line_bound=line,
    )
    return Bounded(done, record, input_coeff, entered)

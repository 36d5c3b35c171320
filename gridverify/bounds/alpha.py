"""alpha-CROWN: CROWN with relaxation parameters optimised per op and per target node.

Every optimisable op j that a target t (each node bounded by CROWN, and the final specification) depends on
gets its own ``alpha[t][j]`` of shape ``(P_j, B, m_t, *S_j)``, one line per specification row (for an
intermediate target, two rows per neuron the specification can depend on: `needed_neurons`), initialised
from the op's CROWN choice. Adam (with exponential learning-rate decay) maximises the sum of the lower
bounds and minimises the sum of the upper bounds; alphas are projected to [0, 1] after each step (every
projected value is sound). Intermediate bounds are recomputed with their own alphas at every step and
intersected with the best seen so far (each is sound, so their intersection is); the final bounds keep the
best value seen per specification, with its linear form. Optimisation stops after ``steps`` steps, after
``patience`` steps without improvement, or when every lower bound exceeds ``stop_above`` (if set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gridverify.bounds.core import (
    BoundResult,
    BoxLike,
    Interval,
    LinearBounds,
    Plan,
    known,
    make_plan,
    spec_matrix,
)
from gridverify.bounds.crown import (
    crown,
    final_bounds,
    ibp_of_spec,
    needed_neurons,
    node_relaxer,
    propagate,
    resolve,
)
from gridverify.bounds.optim import ProjectedAdam
from gridverify.ir.builder import lower_fused
from gridverify.ir.graph import Graph
from gridverify.ops import get_op


@dataclass(frozen=True)
class AlphaConfig:
    """Settings of the alpha optimisation (defaults follow alpha-beta-CROWN's ml4acopf settings)."""

    steps: int = 50
    lr: float = 0.05
    decay: float = 0.98
    patience: int = 20
    min_improvement: float = 1e-6
    optimise_intermediate: bool = True
    shared_intermediate: bool = False  # one alpha per neuron for all rows of an intermediate target
    stop_above: float | None = None
    timeout_s: float | None = None  # stop optimising after this long (every step's bounds are sound)


def _init_alphas(
    graph: Graph, plan: Plan, starts: dict[int, int], intervals: tuple[Interval | None, ...]
) -> dict[tuple[int, int], Tensor]:
    """alpha[(start, j)] of shape (P_j, B, m_start, *S_j) for each optimisable ancestor j of each start."""
    alphas = {}
    for start, m in starts.items():
        for j in sorted(plan.ancestors[start]):
            node = graph.nodes[j]
            op = get_op(node.op)
            if op.kind != "nonlinear" or not op.optimisable or j == start:
                continue
            lows = tuple(known(intervals[k])[0] for k in node.inputs)
            ups = tuple(known(intervals[k])[1] for k in node.inputs)
            a0 = op.init_alpha(lows, ups, **node.kwargs).detach()
            a0 = a0.unsqueeze(2).expand(a0.shape[0], a0.shape[1], m, *a0.shape[2:])
            alphas[(start, j)] = a0.clone().requires_grad_(True)
    return alphas


def _tighter(old: tuple[Interval | None, ...], new: list[Interval | None]) -> tuple[Interval | None, ...]:
    out = []
    for o, n in zip(old, new):
        if o is None or n is None:
            out.append(o if n is None else (n[0].detach(), n[1].detach()))
        else:
            out.append((torch.maximum(o[0], n[0].detach()), torch.minimum(o[1], n[1].detach())))
    return tuple(out)


@dataclass
class _Best:
    """Best final bounds per specification and their linear forms."""

    lower: Tensor
    upper: Tensor
    linear: LinearBounds

    def update(self, lower: Tensor, upper: Tensor, linear: LinearBounds) -> float:
        """Keep the better bound per specification; return the total gain (finite entries only)."""
        lo_better, hi_better = lower > self.lower, upper < self.upper
        gain = (lower - self.lower).clamp(min=0) + (self.upper - upper).clamp(min=0)
        self.lower = torch.where(lo_better, lower, self.lower)
        self.upper = torch.where(hi_better, upper, self.upper)
        self.linear = _select_linear(self.linear, linear, lo_better, hi_better)
        return float(gain.nan_to_num(nan=0.0, posinf=0.0).sum())

    def width(self) -> float:
        return float((self.upper - self.lower).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).abs().sum())


def _select_linear(old: LinearBounds, new: LinearBounds, lo_mask: Tensor, hi_mask: Tensor) -> LinearBounds:
    def pick(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
        m = mask.reshape(*mask.shape, *([1] * (a.ndim - 2)))
        return torch.where(m, b.detach(), a)

    return LinearBounds(
        {k: pick(lo_mask, old.lower[k], new.lower[k]) for k in old.lower},
        pick(lo_mask, old.lower_bias, new.lower_bias),
        {k: pick(hi_mask, old.upper[k], new.upper[k]) for k in old.upper},
        pick(hi_mask, old.upper_bias, new.upper_bias),
    )


def alpha_crown(
    graph: Graph,
    box: BoxLike,
    output: str | int | None = None,
    spec: Tensor | None = None,
    config: AlphaConfig = AlphaConfig(),
    base: tuple[Interval | None, ...] | None = None,
) -> BoundResult:
    """alpha-CROWN bounds of ``C y_output`` over the box: never looser than CROWN's (``base`` as there).
    The box must be float64 (ValueError otherwise: float32 is not rounded outward)."""
    start = crown(graph, box, output, spec, base=base)
    if config.steps <= 0:
        return start
    graph, ibox, out = resolve(graph, box, output)
    plan = make_plan(graph, out)
    like = next(iter(ibox.values()))[0]
    c = spec_matrix(graph, out, spec, like)
    masks = needed_neurons(graph, plan, out, c)
    starts = {out: 2 * c.shape[1]}
    if config.optimise_intermediate:
        starts.update({i: 1 if config.shared_intermediate else 2 * int(m.sum()) for i, m in masks.items()})
    alphas = _init_alphas(graph, plan, starts, start.intervals)
    assert start.linear is not None
    best = _Best(start.lower, start.upper, start.linear)
    if not alphas:
        return start
    intervals = _optimise(graph, ibox, plan, out, c, alphas, best, start.intervals, config, masks)
    return BoundResult(best.lower.detach(), best.upper.detach(), intervals, best.linear, "alpha-crown")


def _optimise(
    graph: Graph,
    box: dict[str, Interval],
    plan: Plan,
    out: int,
    c: Tensor,
    alphas: dict[tuple[int, int], Tensor],
    best: _Best,
    intervals: tuple[Interval | None, ...],
    config: AlphaConfig,
    masks: dict[int, Tensor],
) -> tuple[Interval | None, ...]:
    opt = ProjectedAdam(list(alphas.values()), config.lr, config.decay)
    relaxer = node_relaxer(graph, lambda start, i: alphas.get((start, i)))
    crown_nodes = plan.crown_nodes if config.optimise_intermediate else ()
    stale, until = 0, None if config.timeout_s is None else time.monotonic() + config.timeout_s
    for _ in range(config.steps):
        with torch.enable_grad():
            current, _ = propagate(
                graph, box, plan, relaxer, crown_nodes=crown_nodes, base=intervals, masks=masks, chunk=False
            )
            lower, upper, linear = final_bounds(graph, box, out, c, current, relaxer)
            ilo, ihi = ibp_of_spec(c, current[out])  # type: ignore[arg-type]
            lower, upper = torch.maximum(lower, ilo), torch.minimum(upper, ihi)
            loss = -(lower.sum() - upper.sum())
            grads = torch.autograd.grad(loss, list(alphas.values()), allow_unused=True)
        intervals = _tighter(intervals, current)
        gain = best.update(lower.detach(), upper.detach(), linear)
        stale = 0 if gain > config.min_improvement * (1.0 + best.width()) else stale + 1
        if stale >= config.patience or _decided(best, config):
            break
        if until is not None and time.monotonic() > until:
            break
        opt.step(grads)
    return intervals


def _decided(best: _Best, config: AlphaConfig) -> bool:
    return config.stop_above is not None and bool((best.lower > config.stop_above).all())


ALPHA_BYTES = 1024
"""Bytes per alpha-CROWN parameter entry (a row of an intermediate target x a neuron below it), measured:
the parameters with their gradients and Adam's moments, and the relaxations built from them per row and
neuron (a smooth op's tangent search evaluates a grid of points per entry). case1354, 64 thermal rows:
5.7e6 entries, 7.8 GB peak unshared against 3.5 GB shared."""


def fitting(
    graph: Graph, output: str | int | None, spec: Tensor, config: AlphaConfig, memory_gb: float
) -> AlphaConfig:
    """``config`` for an alpha-CROWN of the rows ``spec`` (m, size of ``output``), with intermediate targets
    sharing one alpha per neuron (``shared_intermediate``) when their own alphas would take more than half
    of ``memory_gb``. Unshared, every intermediate target gets two rows per neuron the rows need, each with
    alphas over every nonlinear node below it, whatever the number of rows: case1354's thermal rows 6 GB;
    vit_2023 pgd_2_3_16_8835, 20 steps: unshared 85 s, 7.8 GB peak, worst row 0.221; shared 33 s, 1.7 GB,
    0.200."""
    if config.shared_intermediate or not config.optimise_intermediate or config.steps <= 0:
        return config
    g = lower_fused(graph)
    out = g.output_ids[output or g.outputs[0][0]] if not isinstance(output, int) else output
    plan = make_plan(g, out)
    c = spec.abs().sum(0).reshape(1, 1, *g.nodes[out].shape).to(torch.float64)
    masks = needed_neurons(g, plan, out, c)
    ops = {j: get_op(g.nodes[j].op) for j in plan.needed}
    alpha_nodes = {j for j, op in ops.items() if op.kind == "nonlinear" and op.optimisable}
    entries = sum(
        2 * int(mask.sum()) * sum(g.nodes[j].size for j in plan.ancestors[i] & alpha_nodes if j != i)
        for i, mask in masks.items()
    )
    if ALPHA_BYTES * entries <= memory_gb * 2**30 / 2:
        return config
    return replace(config, shared_intermediate=True)

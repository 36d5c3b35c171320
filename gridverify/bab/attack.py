"""The falsifier: search each input box for the point that maximises a margin; results re-checked in float64.

The objective of box ``b`` at a point ``x`` is the margin ``min_k (c_bk . y(x) - o_bk)`` over the rows of
``spec[b]`` (one row: ``c . y``; several rows: a conjunction, e.g. one VNN-LIB disjunct, violated when
every row is). Nothing saturates: the search maximises the margin itself, not a loss of it.

Starts, per box: the given ``starts`` (witnesses of earlier searches or of neighbouring rows, the corners
that maximise a row's CROWN lower line), the box centre, random corners and uniform random points. Each
start takes projected sign-gradient steps with momentum in box coordinates ``t in [0, 1]^n``; the first
step is a fraction of the box width that differs between starts (``step_sizes``: large steps jump across the
plateaus that saturated sigmoids and relus leave, small ones climb a slope) and decays geometrically. The
best point of every start is kept over all its steps (the ascent is not monotone). Later rounds restart from
the best points found so far, perturbed, next to fresh random points, until the rounds or the deadline run
out, or every box reaches its ``target``; then each best point is snapped to the vertex its gradient points
to where that is better (chunks of boxes that no time is left for get their centre with
margin -inf). Every returned point is clamped into its box and its value is
recomputed by `Graph.forward` in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from gridverify.bounds.core import LinearBounds
from gridverify.deadline import Deadline
from gridverify.ir.graph import Graph


@dataclass(frozen=True)
class AttackConfig:
    restarts: int = 32  # random starts per box and round, besides the centre, corners and given starts
    corners: int = 16  # random corners per box (all 2^n corners when n <= 6)
    steps: int = 60
    step_sizes: tuple[float, ...] = (0.5, 0.25, 0.1, 0.03)  # first step per start (cycled), x box width
    decay: float = 0.96  # step multiplier per step
    momentum: float = 0.5  # of the normalised gradient; 0: plain signed gradient
    rounds: int = 1  # rounds restarted from the best points so far
    seed: int = 0
    max_points: int = 8192  # points per forward pass (boxes x starts): bounds memory

    @staticmethod
    def legacy() -> AttackConfig:
        """The search before the falsifier (one step size, no momentum): the baseline of bench/attack.py."""
        return AttackConfig(restarts=32, corners=16, steps=40, step_sizes=(0.1,), decay=0.95, momentum=0.0)


def value(graph: Graph, output: str, spec: Tensor, x: Tensor, offset: Tensor | None = None) -> Tensor:
    """Margins ``min_k (spec_k . y(x) - offset_k)`` in x's dtype: x (B, R, *S_in), spec (B, n_out) or
    (B, K, n_out), offset (B, K) -> (B, R)."""
    b, r = x.shape[:2]
    rows = spec if spec.ndim == 3 else spec.unsqueeze(1)
    y = graph.forward(x.reshape(b * r, *x.shape[2:]))[output].reshape(b, r, -1)
    v = torch.einsum("brn,bkn->brk", y, rows.to(y.dtype))
    if offset is not None:
        v = v - offset.to(y.dtype).unsqueeze(1)
    return v.amin(-1)


def attack(
    graph: Graph,
    output: str,
    spec: Tensor,
    lower: Tensor,
    upper: Tensor,
    config: AttackConfig = AttackConfig(),
    *,
    offset: Tensor | None = None,
    starts: Tensor | None = None,
    target: Tensor | float | None = None,
    deadline: Deadline | None = None,
) -> tuple[Tensor, Tensor]:
    """Best point (B, *S_in) found in each box [lower, upper] (B, *S_in), and its float64 margin (B,).

    ``starts`` (B, S, *S_in): extra start points (clamped into the box); ``target`` (B,) or scalar: the
    search stops once every box's margin reaches it; ``deadline``: no step starts once it has
    passed (the best points so far are returned)."""
    b = lower.shape[0]
    per_box = _points_per_box(lower, config, starts)
    chunk = max(1, config.max_points // per_box)
    goal = None if target is None else torch.as_tensor(target, dtype=torch.float64).expand(b)
    xs, vs = [], []
    for s in range(0, b, chunk):
        part = slice(s, s + chunk)
        if deadline is not None and s > 0 and deadline.passed():  # no time left: the centres
            centre = ((lower[part] + upper[part]) / 2).to(torch.float64)
            xs.append(centre)
            vs.append(torch.full(centre.shape[:1], -torch.inf, dtype=torch.float64, device=centre.device))
            continue
        x, v = _attack_boxes(
            graph,
            output,
            spec[part],
            lower[part],
            upper[part],
            config,
            None if offset is None else offset[part],
            None if starts is None else starts[part],
            None if goal is None else goal[part],
            deadline,
        )
        xs.append(x)
        vs.append(v)
    return torch.cat(xs), torch.cat(vs)


def _points_per_box(lower: Tensor, config: AttackConfig, starts: Tensor | None) -> int:
    n = lower[0].numel()
    corners = 2**n if n <= 6 else config.corners
    return 1 + corners + config.restarts + (0 if starts is None else starts.shape[1])


def _first_starts(
    lower: Tensor, upper: Tensor, config: AttackConfig, starts: Tensor | None, gen: torch.Generator
) -> Tensor:
    """(B, R, n) starting points in box coordinates [0, 1]^n."""
    b, n = lower.shape[0], lower[0].numel()
    opts: dict[str, Any] = {"dtype": lower.dtype, "device": lower.device}
    pts = [torch.full((b, 1, n), 0.5, **opts)]
    if starts is not None and starts.shape[1] > 0:
        pts.append(_to_unit(starts.reshape(b, starts.shape[1], n).to(**opts), lower, upper))
    if n <= 6:
        corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], **opts)] * n).reshape(-1, n)
        pts.append(corners.expand(b, -1, -1))
    else:
        pts.append(
            torch.randint(0, 2, (b, config.corners, n), generator=gen, device=lower.device).to(lower.dtype)
        )
    pts.append(torch.rand(b, config.restarts, n, generator=gen, **opts))
    return torch.cat(pts, 1)


def _to_unit(x: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    lo, width = lower.reshape(lower.shape[0], 1, -1), (upper - lower).reshape(lower.shape[0], 1, -1)
    t = torch.where(width > 0, (x - lo) / torch.where(width > 0, width, 1.0), 0.5)
    return t.nan_to_num(0.5).clamp(0.0, 1.0)


def _attack_boxes(
    graph: Graph,
    output: str,
    spec: Tensor,
    lower: Tensor,
    upper: Tensor,
    config: AttackConfig,
    offset: Tensor | None,
    starts: Tensor | None,
    goal: Tensor | None,
    deadline: Deadline | None,
) -> tuple[Tensor, Tensor]:
    shape = lower.shape[1:]
    b = lower.shape[0]
    lo, width = lower.reshape(b, 1, -1), (upper - lower).reshape(b, 1, -1)
    task = _Task(graph, output, spec, offset, lo, width, shape)
    gen = torch.Generator(device=lower.device).manual_seed(config.seed)
    t = _first_starts(lower, upper, config, starts, gen)
    best_t, best_v = t.clone(), torch.full(t.shape[:2], -torch.inf, dtype=t.dtype, device=t.device)
    for rnd in range(config.rounds):
        if rnd > 0:
            t = _next_starts(best_t, best_v, config, gen)
        if _ascend(task, t, best_t, best_v, config, goal, deadline):
            break
    if deadline is None or not deadline.passed():
        _snap(task, best_t, best_v)
        fine = replace(config, step_sizes=(0.02, 0.005), steps=config.steps // 2, momentum=0.0)
        _ascend(task, best_t.clone(), best_t, best_v, fine, goal, deadline)
    hi = upper.reshape(b, 1, -1)
    x = torch.minimum(torch.maximum(lo + best_t * width, lo), hi).to(torch.float64)
    spec64 = spec.to(torch.float64)
    off64 = None if offset is None else offset.to(torch.float64)
    vals = value(graph, output, spec64, x.reshape(*x.shape[:2], *shape), off64)
    pick = vals.nan_to_num(nan=-torch.inf).argmax(1)
    rows = torch.arange(b, device=x.device)
    return x[rows, pick].reshape(b, *shape), vals[rows, pick]


def _snap(task: _Task, best_t: Tensor, best_v: Tensor) -> None:
    """Polish every start's best point: move each coordinate to the bound its gradient points to (the
    maximiser of the margin's linearisation over the box), kept where the margin improves. Steps end a
    small fraction of the width short of a vertex; at a vertex-shaped maximum this lands on it exactly."""
    t = best_t.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(task.margin(t).sum(), t)
    with torch.no_grad():
        snapped = torch.where(grad > 0, 1.0, torch.where(grad < 0, 0.0, best_t)) * (task.width > 0)
        snapped = snapped + best_t * (task.width <= 0)
        v = task.margin(snapped)
        better = v.nan_to_num(nan=-torch.inf) > best_v
        best_v.copy_(torch.where(better, v, best_v))
        best_t.copy_(torch.where(better.unsqueeze(-1), snapped, best_t))


def _next_starts(best_t: Tensor, best_v: Tensor, config: AttackConfig, gen: torch.Generator) -> Tensor:
    """The best quarter of the points found so far, perturbed, and fresh uniform points."""
    b, r, n = best_t.shape
    keep = max(1, r // 4)
    top = best_v.nan_to_num(nan=-torch.inf).topk(keep, dim=1).indices
    elite = best_t.gather(1, top.unsqueeze(-1).expand(b, keep, n))
    noise = 0.05 * (2 * torch.rand(b, keep, n, generator=gen, dtype=best_t.dtype, device=best_t.device) - 1)
    fresh = torch.rand(b, r - keep, n, generator=gen, dtype=best_t.dtype, device=best_t.device)
    return torch.cat([(elite + noise).clamp(0.0, 1.0), fresh], 1)


@dataclass(frozen=True)
class _Task:
    """What one chunk of boxes searches: margins of ``spec`` at ``lo + t * width``."""

    graph: Graph
    output: str
    spec: Tensor
    offset: Tensor | None
    lo: Tensor  # (B, 1, n)
    width: Tensor  # (B, 1, n)
    shape: torch.Size

    def margin(self, t: Tensor) -> Tensor:
        x = (self.lo + t * self.width).reshape(*t.shape[:2], *self.shape)
        return value(self.graph, self.output, self.spec, x, self.offset)


def _ascend(
    task: _Task,
    t: Tensor,
    best_t: Tensor,
    best_v: Tensor,
    config: AttackConfig,
    goal: Tensor | None,
    deadline: Deadline | None,
) -> bool:
    """One round of momentum sign ascent from ``t``, updating the per-start bests (``best_t``, ``best_v``)
    in place; True when the search should stop (every goal reached or the deadline passed)."""
    r = t.shape[1]
    sizes = torch.tensor(config.step_sizes, dtype=t.dtype, device=t.device)
    step0 = sizes[torch.arange(r, device=t.device) % sizes.numel()].reshape(1, r, 1)
    movable = task.width > 0
    momentum = torch.zeros_like(t)
    for k in range(config.steps + 1):
        if deadline is not None and deadline.passed():
            return True
        t = t.detach().requires_grad_(k < config.steps)
        with torch.enable_grad():
            v = task.margin(t)
            grad = torch.autograd.grad(v.sum(), t)[0] if k < config.steps else None
        with torch.no_grad():
            better = v.nan_to_num(nan=-torch.inf) > best_v
            best_v.copy_(torch.where(better, v, best_v))
            best_t.copy_(torch.where(better.unsqueeze(-1), t, best_t))
            if goal is not None and bool((best_v.amax(1) >= goal.to(best_v.dtype)).all()):
                return True
            if grad is None:
                break
            g = grad.nan_to_num(0.0) * movable
            scale = g.abs().mean(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
            momentum = config.momentum * momentum + g / scale
            t = (t + step0 * config.decay**k * momentum.sign() * movable).clamp(0.0, 1.0)
    return False


def line_corners(linear: LinearBounds | None, graph: Graph, lower: Tensor, upper: Tensor) -> Tensor | None:
    """(R, *S_in): per specification row, the corner of the box [lower, upper] (each (1, *S_in)) that
    maximises the row's CROWN lower line, where the row's value is at least the line's (coefficient 0: the
    box centre); None without linear bounds."""
    if linear is None:
        return None
    a = linear.lower[graph.inputs[0][0]][0].to(lower)  # (R, *S_in)
    lo, hi = lower[0], upper[0]
    return torch.where(a > 0, hi, torch.where(a < 0, lo, (lo + hi) / 2))

"""PGD: search the input box for points that maximise ``c^T y(x)``; every result is re-evaluated in float64.

Starts: the box centre, its corners (up to 2^6 of them, otherwise random corners), and uniform random
points; each takes projected signed-gradient ascent steps on ``c^T y`` (step a decaying fraction of the
box width). The best point per box is returned
with its value recomputed by `Graph.forward` in float64 (points are clamped into the box first).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridverify.ir.graph import Graph


@dataclass(frozen=True)
class AttackConfig:
    restarts: int = 32
    steps: int = 40
    lr: float = 0.1  # as a fraction of the box width
    decay: float = 0.95
    seed: int = 0


def value(graph: Graph, output: str, spec: Tensor, x: Tensor) -> Tensor:
    """``spec . y(x)`` in float64: x (B, R, *S_in), spec (B, n_out) -> (B, R)."""
    b, r = x.shape[:2]
    y = graph.forward(x.reshape(b * r, *x.shape[2:]).to(torch.float64))[output]  # type: ignore[index]
    return (y.reshape(b, r, -1) * spec.to(torch.float64).unsqueeze(1)).sum(-1)


def _starts(lower: Tensor, upper: Tensor, config: AttackConfig) -> Tensor:
    """(B, R, n) starting points in [0, 1]^n (box coordinates)."""
    b, n = lower.shape[0], lower[0].numel()
    gen = torch.Generator(device=lower.device).manual_seed(config.seed)
    pts = [torch.full((b, 1, n), 0.5, dtype=lower.dtype, device=lower.device)]
    if n <= 6:
        corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=lower.dtype)] * n).reshape(-1, n)
        pts.append(corners.to(lower.device).expand(b, -1, -1))
    else:
        pts.append(torch.randint(0, 2, (b, 16, n), generator=gen, device=lower.device).to(lower.dtype))
    pts.append(torch.rand(b, config.restarts, n, generator=gen, dtype=lower.dtype, device=lower.device))
    return torch.cat(pts, 1)


def attack(
    graph: Graph,
    output: str,
    spec: Tensor,
    lower: Tensor,
    upper: Tensor,
    config: AttackConfig = AttackConfig(),
) -> tuple[Tensor, Tensor]:
    """Best point (B, *S_in) found in each box [lower, upper] (B, *S_in), and its float64 value (B,)."""
    shape = lower.shape[1:]
    lo, width = lower.reshape(lower.shape[0], 1, -1), (upper - lower).reshape(lower.shape[0], 1, -1)
    t = _starts(lower, upper, config)
    for step in range(config.steps):
        t = t.detach().requires_grad_(True)
        with torch.enable_grad():
            v = value(graph, output, spec, (lo + t * width).reshape(*t.shape[:2], *shape))
            (grad,) = torch.autograd.grad(v.sum(), t)
        with torch.no_grad():
            lr = config.lr * config.decay**step
            t = (t + lr * grad.sign() * (width > 0)).clamp(0.0, 1.0)
    hi = upper.reshape(upper.shape[0], 1, -1)
    x = torch.minimum(torch.maximum(lo + t.detach() * width, lo), hi)
    vals = value(graph, output, spec, x.reshape(*x.shape[:2], *shape))
    best = vals.nan_to_num(nan=-torch.inf).argmax(1)
    pick = x[torch.arange(x.shape[0]), best]
    return pick.reshape(-1, *shape), vals[torch.arange(x.shape[0]), best]

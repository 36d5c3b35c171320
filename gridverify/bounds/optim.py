"""`ProjectedAdam`: Adam with exponential learning-rate decay and a box projection after each step.

Used for relaxation parameters (alpha in [0, 1]) and split multipliers (beta >= 0). The optimiser owns its
moment tensors; the parameters are plain tensors updated in place.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class ProjectedAdam:
    """Minimises: ``step(grads)`` moves each parameter against its gradient, then clamps it to its box."""

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float | Sequence[float],
        decay: float,
        boxes: Sequence[tuple[float | None, float | None]] | None = None,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lrs = [lr] * len(self.params) if isinstance(lr, (int, float)) else list(lr)
        self.boxes = list(boxes) if boxes is not None else [(0.0, 1.0)] * len(self.params)
        self.decay, self.betas, self.eps = decay, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor | None]) -> None:
        self.t += 1
        b1, b2 = self.betas
        scale = self.decay ** (self.t - 1)
        for p, g, m, v, lr, (lo, hi) in zip(self.params, grads, self.m, self.v, self.lrs, self.boxes):
            if g is None:
                continue
            g = g.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat, v_hat = m / (1 - b1**self.t), v / (1 - b2**self.t)
            p.sub_(lr * scale * m_hat / (v_hat.sqrt() + self.eps)).clamp_(min=lo, max=hi)

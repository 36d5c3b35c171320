"""clip(x, lo, hi) = min(max(x, lo), hi) with constants lo <= hi: nondecreasing, piecewise linear.

Relaxation on ``[l, u]`` (with ``h = clamp(hi, l, u)`` and ``g = clamp(lo, l, u)``):
upper line through ``(h, f(h))`` with slope ``alpha_U * (f(h) - f(l))/(h - l)``; lower line through
``(g, f(g))`` with slope ``alpha_L * (f(u) - f(g))/(u - g)``. Each is sound for every alpha in [0, 1]:
f is convex on [l, h] and constant right of h (upper), concave on [g, u] and constant left of g (lower).
Default alpha: the envelope's facet at the midpoint. Precondition: lo <= hi. Range ``[lo, hi]``.
"""

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation, register


def _forward(x: Tensor, lo: float, hi: float) -> Tensor:
    return x.clamp(lo, hi)


def _interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], lo: float, hi: float
) -> tuple[Tensor, Tensor]:
    return lows[0].clamp(lo, hi), ups[0].clamp(lo, hi)


def _pivots(l: Tensor, u: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    h = torch.minimum(torch.maximum(torch.full_like(l, hi), l), u)
    g = torch.minimum(torch.maximum(torch.full_like(l, lo), l), u)
    s_up = torch.where(h > l, (h.clamp(lo, hi) - l.clamp(lo, hi)) / torch.where(h > l, h - l, 1.0), 0.0)
    s_lo = torch.where(u > g, (u.clamp(lo, hi) - g.clamp(lo, hi)) / torch.where(u > g, u - g, 1.0), 0.0)
    return h, g, s_up, s_lo


def _relax(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, lo: float, hi: float
) -> Relaxation:
    h, g, s_up, s_lo = _pivots(lows[0], ups[0], lo, hi)
    uw, lw = alpha[1] * s_up, alpha[0] * s_lo
    ub = h.clamp(lo, hi) - uw * h
    lb = g.clamp(lo, hi) - lw * g
    # Slope 0: the constant f(h) (f(g)), a value of f at a point of the box that bounds f on it: exact.
    return Relaxation((lw,), lb, (uw,), ub, exact_lower=lw == 0, exact_upper=uw == 0)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], lo: float, hi: float) -> Tensor:
    l, u = lows[0], ups[0]
    h, g, _, _ = _pivots(l, u, lo, hi)
    mid = 0.5 * (l + u)
    return torch.stack([(mid > g).to(l.dtype), (mid < h).to(l.dtype)])


OP = register(
    OpDef(
        name="clip",
        forward=_forward,
        interval=_interval,
        relax=_relax,
        n_alpha=2,
        init_alpha=_init,
        torch_functions=(torch.clamp, torch.clip, "clamp", "clip"),
        onnx_types=("Clip",),
        value_range=lambda lo, hi: (lo, hi),
        sample_params=({"lo": -1.0, "hi": 2.0}, {"lo": 0.0, "hi": 6.0}, {"lo": 0.5, "hi": 0.5}),
    )
)

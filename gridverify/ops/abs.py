"""abs(x) = |x|: convex, piecewise linear.

Relaxation on ``[l, u]``: exact when the box does not contain 0 inside; otherwise
``(2*alpha - 1)*x <= |x| <= (u + l)/(u - l)*(x - l) - l`` (the chord), alpha in [0, 1]
(default: slope +1 if u > -l else -1, the minimal-area choice). Precondition: none. Range ``[0, inf)``.
The chord's offset is rounded outward by the registry; the other lines are exact in floating point.
"""

import math
import operator

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation, register, same_shape


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    l, u = lows[0], ups[0]
    straddle = (l < 0) & (u > 0)
    lo = torch.where(straddle, torch.zeros_like(l), torch.minimum(l.abs(), u.abs()))
    return lo, torch.maximum(l.abs(), u.abs())


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    l, u = lows[0], ups[0]
    straddle = (l < 0) & (u > 0)
    sign = torch.where(u + l >= 0, 1.0, -1.0).to(u.dtype)  # slope of |x| on a box that does not straddle
    width = torch.where(straddle, u - l, torch.ones_like(u))
    chord = torch.where(straddle, (u + l) / width, sign)
    ub = torch.where(straddle, -chord * l - l, torch.zeros_like(l))
    lw = torch.where(straddle, 2 * alpha[0] - 1, sign)
    # (2*alpha - 1)*x <= |x| holds as rounded (|slope| <= 1); only the chord is widened.
    return Relaxation((lw,), torch.zeros_like(lw), (chord,), ub, exact_lower=True, exact_upper=~straddle)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
    return (ups[0] > -lows[0]).to(ups[0].dtype).unsqueeze(0)


OP = register(
    OpDef(
        name="abs",
        kink_at_zero=True,
        kind="nonlinear",
        arity=1,
        forward=torch.abs,
        shape=same_shape,
        interval=_interval,
        value_range=(0.0, math.inf),
        relax=_relax,
        n_alpha=1,
        init_alpha=_init,
        sympy_heads=("Abs",),
        torch_functions=(torch.abs, operator.abs, "abs", "__abs__"),
        onnx_types=("Abs",),
    )
)

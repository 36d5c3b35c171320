"""sin(x): periodic (2*pi), convex where sin <= 0 and concave where sin >= 0 (inflections at k*pi).

Relaxation (see `gridverify.ops.smooth`): boxes are shifted by whole periods so that ``l`` is in
``[0, 2*pi)``; for slopes ``a_L, a_U`` in the range of cos over the box, ``a_L*x + b_L <= sin(x) <=
a_U*x + b_U`` with the tightest offsets, found from the points where cos(x) = a (closed form
``x = +-acos(a) + 2*pi*k``). Boxes at least 2*pi wide (any width is accepted) get ``-1 <= sin(x) <= 1``.
Precondition: finite box. Range ``[-1, 1]``.
"""

import math

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import register

TWO_PI = 2 * math.pi


def _neg_sin(x: Tensor) -> Tensor:
    return -torch.sin(x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """x in the monotone piece [p, q] of cos with cos(x) = a."""
    mid = 0.5 * (p + q)
    k = torch.floor(mid / TWO_PI)
    acos = torch.acos(a.clamp(-1.0, 1.0))
    convex = torch.sin(mid) < 0  # cos increasing on [pi, 2*pi] + 2*pi*k
    return torch.where(convex, TWO_PI * (k + 1) - acos, TWO_PI * k + acos)


FN = smooth.SmoothFn(
    torch.sin,
    torch.cos,
    _neg_sin,
    inflections=tuple(k * math.pi for k in range(5)),
    period=TWO_PI,
    solve_df=_solve,
)

OP = register(
    smooth.make_op(
        "sin",
        FN,
        sympy_heads=("sin",),
        torch_functions=(torch.sin, "sin"),
        onnx_types=("Sin",),
        value_range=(-1.0, 1.0),
        sample_domain=(-20.0, 20.0),
    )
)

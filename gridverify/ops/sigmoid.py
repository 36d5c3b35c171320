"""sigmoid(x) = 1 / (1 + exp(-x)): S-shaped, convex for x <= 0, concave for x >= 0 (inflection at 0).

Relaxation (see `gridverify.ops.smooth`): for slopes ``a_L, a_U`` in the range of sigmoid' over ``[l, u]``,
``a_L*x + b_L <= sigmoid(x) <= a_U*x + b_U`` on ``[l, u]`` with the tightest offsets. The default lines are
the minimal-area ones: tangent below and chord above on the convex side, the mirror image on the concave
side, and across 0 the tangent through the far endpoint (or the chord when it stays on the right side).
Precondition: none (any finite box). Range ``[0, 1]``.
"""

import torch
from torch import Tensor, nn

from gridverify.ops import smooth
from gridverify.ops.registry import register


def _d1(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


def _d2(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s) * (1 - 2 * s)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """x on the side of 0 holding [p, q] with sigmoid'(x) = a (a in (0, 1/4])."""
    a = a.clamp(torch.finfo(a.dtype).tiny, 0.25)
    small = 2 * a / (1 + torch.sqrt((1 - 4 * a).clamp(min=0)))  # the root s <= 1/2 of s(1-s) = a
    x_neg = torch.log(small) - torch.log1p(-small)
    return torch.where(p + q > 0, -x_neg, x_neg)


FN = smooth.SmoothFn(torch.sigmoid, _d1, _d2, inflections=(0.0,), solve_df=_solve)

OP = register(
    smooth.make_op(
        "sigmoid",
        FN,
        sympy_heads=(),
        torch_functions=(torch.sigmoid, torch.nn.functional.sigmoid, "sigmoid", nn.Sigmoid),
        onnx_types=("Sigmoid",),
        value_range=(0.0, 1.0),
        sample_domain=(-20.0, 20.0),
    )
)

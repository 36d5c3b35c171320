"""tanh(x): S-shaped, convex for x <= 0, concave for x >= 0 (inflection at 0).

Relaxation: as sigmoid (see `gridverify.ops.smooth`): ``a_L*x + b_L <= tanh(x) <= a_U*x + b_U`` on
``[l, u]`` for slopes in the range of tanh' = 1 - tanh^2 over the box, offsets tightest possible.
Precondition: none. Range ``[-1, 1]``.
"""

import torch
from torch import Tensor, nn

from gridverify.ops import smooth
from gridverify.ops.registry import register


def _d1(x: Tensor) -> Tensor:
    return 1 - torch.tanh(x) ** 2


def _d2(x: Tensor) -> Tensor:
    t = torch.tanh(x)
    return -2 * t * (1 - t**2)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """x on the side of 0 holding [p, q] with tanh'(x) = a (a in (0, 1])."""
    x_pos = torch.atanh(torch.sqrt((1 - a).clamp(0.0, 1.0)))
    return torch.where(p + q > 0, x_pos, -x_pos)


FN = smooth.SmoothFn(torch.tanh, _d1, _d2, inflections=(0.0,), solve_df=_solve)

OP = register(
    smooth.make_op(
        "tanh",
        FN,
        sympy_heads=("tanh",),
        torch_functions=(torch.tanh, torch.nn.functional.tanh, "tanh", nn.Tanh),
        onnx_types=("Tanh",),
        value_range=(-1.0, 1.0),
        sample_domain=(-10.0, 10.0),
    )
)

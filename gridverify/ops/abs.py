"""abs(x) = |x|: convex, two linear pieces meeting at 0, left slope -1 (see `gridverify.ops.kinked`).

Relaxation on ``[l, u]``: exact when the box does not contain 0 inside; otherwise
``(2*alpha - 1)*x <= |x| <= (u + l)/(u - l)*(x - l) - l`` (the chord), alpha in [0, 1]
(default: slope +1 if u > -l else -1, the minimal-area choice). Precondition: none. Range ``[0, inf)``.
The chord's offset is rounded outward by the registry; the other lines are exact in floating point.
"""

import math
import operator

import torch

from gridverify.ops import kinked
from gridverify.ops.registry import operator_calls, register

OP = register(
    kinked.make_op(
        "abs",
        torch.abs,
        a=-1.0,
        value_range=(0.0, math.inf),
        sympy_heads=("Abs",),
        torch_functions=operator_calls(torch.abs, operator.abs),
        onnx_types=("Abs",),
    )
)

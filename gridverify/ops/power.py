"""power(x, n) = x**n for an integer n >= 2.

Even n: convex, tangent below and chord above. Odd n: convex for x >= 0 and concave for x <= 0
(inflection at 0), handled like an S-shaped function (see `gridverify.ops.smooth`):
``a_L*x + b_L <= x**n <= a_U*x + b_U`` on ``[l, u]`` for slopes in the range of n*x**(n-1) over the box,
tightest offsets. Precondition: integer n >= 2 (front ends lower n = 0, 1 and negative n to other ops).
Range: ``[0, inf)`` for even n.
"""

import math
import operator
from functools import cache

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import operator_calls, register


@cache
def smooth_fn(exponent: int) -> smooth.SmoothFn:
    """x**exponent with its derivatives and the inverse of its derivative (one per exponent)."""
    n = exponent
    if not (isinstance(n, int) and n >= 2):
        raise ValueError(f"power needs an integer exponent >= 2, got {n!r}")

    def f(x: Tensor) -> Tensor:
        return x**n

    def d1(x: Tensor) -> Tensor:
        return n * x ** (n - 1)

    def d2(x: Tensor) -> Tensor:
        return n * (n - 1) * x ** (n - 2)

    def solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
        root = (a.abs() / n) ** (1.0 / (n - 1))
        side = torch.sign(a) if n % 2 == 0 else torch.where(p + q > 0, 1.0, -1.0).to(a)
        return side * root

    return smooth.SmoothFn(f, d1, d2, inflections=(0.0,) if n % 2 else (), solve_df=solve, abs_err=0.0)


def _range(exponent: int) -> tuple[float, float]:
    return (0.0, math.inf) if exponent % 2 == 0 else (-math.inf, math.inf)


OP = register(
    smooth.make_op(
        "power",
        smooth_fn,
        sympy_heads=("Pow",),
        torch_functions=operator_calls(torch.pow, operator.pow),
        onnx_types=("Pow",),
        value_range=_range,
        sample_domain=(-5.0, 5.0),
        sample_params=({"exponent": 2}, {"exponent": 3}, {"exponent": 4}, {"exponent": 5}),
    )
)

"""square(x) = x*x: convex, minimum 0 at x = 0.

Relaxation: tangent below at a point t of the box, chord above:
``2t*x - t^2 <= x^2 <= (l + u)*x - l*u`` on ``[l, u]`` (with l < 0 < u, t = 0 gives ``x^2 >= 0``).
alpha moves both slopes within [2l, 2u] (see `gridverify.ops.smooth`). Precondition: none. Range ``[0, inf)``:
the interval's lower bound is never below 0 (so ``sqrt(p^2 + q^2)`` sees a box in its domain).
"""

import math

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import register


def _f(x: Tensor) -> Tensor:
    return x * x


def _d1(x: Tensor) -> Tensor:
    return 2 * x


def _d2(x: Tensor) -> Tensor:
    return torch.full_like(x, 2.0)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return 0.5 * a


FN = smooth.SmoothFn(_f, _d1, _d2, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "square",
        FN,
        torch_functions=(torch.square, "square"),
        value_range=(0.0, math.inf),
        sample_domain=(-100.0, 100.0),
    )
)

"""sqrt(x): concave and increasing on x >= 0.

Relaxation: chord below, tangent above (see `gridverify.ops.smooth`):
``chord(x) <= sqrt(x) <= sqrt(t) + (x - t)/(2 sqrt t)``. At ``l = 0`` the slope range is capped (the
derivative is infinite there); every capped slope is still sound.
Precondition: ``l >= 0``; otherwise `DomainError`. Range ``[0, inf)``.
"""

import math

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import domain_check, register


def _d1(x: Tensor) -> Tensor:
    return 0.5 / torch.sqrt(x)


def _d2(x: Tensor) -> Tensor:
    return -0.25 / (x * torch.sqrt(x))


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return 0.25 / (a * a)


FN = smooth.SmoothFn(torch.sqrt, _d1, _d2, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "sqrt",
        FN,
        splittable=False,
        domain=domain_check("sqrt", "an input lower bound >= 0", lambda lower, upper: lower < 0),
        sympy_heads=("sqrt",),
        torch_functions=(torch.sqrt, "sqrt"),
        onnx_types=("Sqrt",),
        value_range=(0.0, math.inf),
        sample_domain=(0.0, 50.0),
    )
)

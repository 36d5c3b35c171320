"""log(x): concave and increasing on x > 0.

Relaxation: chord below, tangent above (see `gridverify.ops.smooth`):
``chord(x) <= log(x) <= log(t) + (x - t)/t`` on ``[l, u]``.
Precondition: ``l > 0``; otherwise `DomainError` names the offending bound.
"""

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import domain_check, register


def _d1(x: Tensor) -> Tensor:
    return 1 / x


def _d2(x: Tensor) -> Tensor:
    return -1 / (x * x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return 1 / a


FN = smooth.SmoothFn(torch.log, _d1, _d2, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "log",
        FN,
        splittable=False,
        domain=domain_check("log", "an input lower bound > 0", lambda lower, upper: lower <= 0),
        sympy_heads=("log",),
        torch_functions=(torch.log, "log"),
        onnx_types=("Log",),
        sample_domain=(1e-3, 50.0),
    )
)

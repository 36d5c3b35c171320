"""exp(x): convex and increasing.

Relaxation: tangent below, chord above (alpha moves both within the range of exp' on the box; see
`gridverify.ops.smooth`): ``exp(t) + exp(t)*(x - t) <= exp(x) <= chord(x)`` on ``[l, u]``. Lines that
overflow (u beyond ~709 in float64) fall back to the interval's constant bounds. Precondition: none.
Range ``[0, inf)``; offsets get a relative outward margin, so the lower bound stays positive until exp
underflows.
"""

import math

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import register


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return torch.log(a.clamp(min=torch.finfo(a.dtype).tiny))


FN = smooth.SmoothFn(torch.exp, torch.exp, torch.exp, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "exp",
        FN,
        splittable=False,
        sympy_heads=("exp",),
        torch_functions=(torch.exp, "exp"),
        onnx_types=("Exp",),
        value_range=(0.0, math.inf),
        sample_domain=(-30.0, 30.0),
    )
)

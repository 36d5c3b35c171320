"""reciprocal(x) = 1/x on a box that excludes 0: convex for x > 0, concave for x < 0.

Relaxation (see `gridverify.ops.smooth`): on a positive box, tangent below and chord above,
``2/t - x/t^2 <= 1/x <= (l + u - x)/(l*u)``; the mirror image on a negative box.
Precondition: ``l > 0`` or ``u < 0``; a box containing 0 raises `DomainError` (division by a quantity that
may vanish cannot be bounded).
"""

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import DomainError, register


def _f(x: Tensor) -> Tensor:
    return 1 / x


def _d1(x: Tensor) -> Tensor:
    return -1 / (x * x)


def _d2(x: Tensor) -> Tensor:
    return 2 / (x * x * x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    root = torch.sqrt(-1 / a.clamp(max=-torch.finfo(a.dtype).tiny))
    return torch.where(p + q > 0, root, -root)


def _domain(lower: Tensor, upper: Tensor) -> None:
    bad = (lower <= 0) & (upper >= 0)
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise DomainError(
            f"reciprocal needs an input interval that excludes 0, got [{float(lower[idx]):.6g}, "
            f"{float(upper[idx]):.6g}] at index {idx} ({int(bad.sum())} entries contain 0)"
        )


FN = smooth.SmoothFn(_f, _d1, _d2, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "reciprocal",
        FN,
        domain=_domain,
        torch_functions=(torch.reciprocal, "reciprocal"),
        onnx_types=("Reciprocal",),
        sample_domain=(0.05, 50.0),
    )
)

"""log(x): concave and increasing on x > 0.

Relaxation: chord below, tangent above (see `gridverify.ops.smooth`):
``chord(x) <= log(x) <= log(t) + (x - t)/t`` on ``[l, u]``.
Precondition: ``l > 0``; otherwise `DomainError` names the offending bound.
"""

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import DomainError, register


def _d1(x: Tensor) -> Tensor:
    return 1 / x


def _d2(x: Tensor) -> Tensor:
    return -1 / (x * x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return 1 / a


def check_positive(name: str, lower: Tensor, upper: Tensor, strict: bool = True) -> None:
    bad = lower <= 0 if strict else lower < 0
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        relation = "> 0" if strict else ">= 0"
        raise DomainError(
            f"{name} needs an input lower bound {relation}, got [{float(lower[idx]):.6g}, "
            f"{float(upper[idx]):.6g}] at index {idx} ({int(bad.sum())} entries out of domain)"
        )


def _domain(lower: Tensor, upper: Tensor) -> None:
    check_positive("log", lower, upper)


FN = smooth.SmoothFn(torch.log, _d1, _d2, solve_df=_solve, abs_err=0.0)

OP = register(
    smooth.make_op(
        "log",
        FN,
        splittable=False,
        domain=_domain,
        sympy_heads=("log",),
        torch_functions=(torch.log, "log"),
        onnx_types=("Log",),
        sample_domain=(1e-3, 50.0),
    )
)

"""cos(x) = sin(x + pi/2): the sin relaxation on the shifted box (see `gridverify.ops.sin`).

Relaxation: ``a_L*x + b_L <= cos(x) <= a_U*x + b_U`` on ``[l, u]`` for slopes in the range of -sin over the
box, tightest offsets; boxes at least 2*pi wide get ``-1 <= cos(x) <= 1``. Precondition: finite box.
Range ``[-1, 1]``.
"""

import math

import torch
from torch import Tensor

from gridverify.ops import sin as sin_op
from gridverify.ops import smooth
from gridverify.ops.registry import register

SHIFT = math.pi / 2


def _neg_sin(x: Tensor) -> Tensor:
    return -torch.sin(x)


def _neg_cos(x: Tensor) -> Tensor:
    return -torch.cos(x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    return sin_op.FN.solve_df(a, p + SHIFT, q + SHIFT) - SHIFT  # type: ignore[misc]


def _inflections() -> tuple[float, ...]:
    window = 2 * sin_op.TWO_PI
    pts = {round(c - SHIFT + k * sin_op.TWO_PI, 12) for c in sin_op.FN.inflections for k in (0, 1)}
    return tuple(sorted(p for p in pts if 0.0 <= p <= window))


FN = smooth.SmoothFn(
    torch.cos, _neg_sin, _neg_cos, inflections=_inflections(), period=sin_op.TWO_PI, solve_df=_solve
)

OP = register(
    smooth.make_op(
        "cos",
        FN,
        sympy_heads=("cos",),
        torch_functions=(torch.cos, "cos"),
        onnx_types=("Cos",),
        value_range=(-1.0, 1.0),
        sample_domain=(-20.0, 20.0),
    )
)

"""matmul(x, y) = x @ y of two variable tensors (x: (..., I, K), y: (..., K, J)), a fused bilinear op.

Bound propagation uses its decomposition ``sum_k x[..., i, k, None] * y[..., None, k, j]``: a broadcast
`mul` (McCormick planes per product term) followed by `sum` over k. Its interval is the interval product
of the same decomposition. Precondition: both inputs at least 2-D, inner sizes equal.
"""

import operator
from typing import Any

import torch
from torch import Tensor

from gridverify.ops import mul
from gridverify.ops.registry import OpDef, broadcast_shape, register


def _shape(xs: tuple[int, ...], ys: tuple[int, ...]) -> tuple[int, ...]:
    if len(xs) < 2 or len(ys) < 2 or xs[-1] != ys[-2]:
        raise ValueError(f"matmul needs shapes (..., I, K) and (..., K, J), got {xs} and {ys}")
    batch = broadcast_shape(xs[:-2], ys[:-2])
    return (*batch, xs[-2], ys[-1])


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    (xl, yl), (xu, yu) = lows, ups
    lo, hi = mul.OP.interval((xl.unsqueeze(-1), yl.unsqueeze(-3)), (xu.unsqueeze(-1), yu.unsqueeze(-3)))  # type: ignore[misc]
    return lo.sum(-2), hi.sum(-2)


def _decompose(builder: Any, x: Any, y: Any) -> Any:
    xs, ys = x.shape, y.shape
    xe = builder.reshape(x, (*xs[:-1], xs[-1], 1))
    ye = builder.reshape(y, (*ys[:-2], 1, ys[-2], ys[-1]))
    return builder.sum(builder.mul(xe, ye), axes=(-2,))


OP = register(
    OpDef(
        name="matmul",
        kind="fused",
        arity=2,
        forward=torch.matmul,
        shape=_shape,
        interval=_interval,
        decompose=_decompose,
        torch_functions=(torch.matmul, torch.bmm, operator.matmul, "matmul", "bmm"),
        onnx_types=("MatMul",),
    )
)

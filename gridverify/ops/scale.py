"""scale(x; factor) = x * factor for a constant tensor ``factor`` broadcastable to x: exact linear.

Interval: ``[min(c*l, c*u), max(c*l, c*u)]`` elementwise.
"""

from typing import Any

import torch
from torch import Tensor

from gridverify.const import Const
from gridverify.ops.registry import OpDef, broadcast_shape, register


def _forward(x: Tensor, factor: Const) -> Tensor:
    return x * factor.like(x)


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], factor: Any) -> tuple[Tensor, Tensor]:
    a, b = _forward(lows[0], factor), _forward(ups[0], factor)
    return torch.minimum(a, b), torch.maximum(a, b)


def _shape(shape: tuple[int, ...], factor: Any) -> tuple[int, ...]:
    if len(factor.shape) > len(shape):
        raise ValueError(f"scale factor of shape {factor.shape} has more axes than its input {shape}")
    return broadcast_shape(shape, factor.shape)


def _abs(x: Tensor, factor: Const) -> Tensor:
    return x * factor.like(x).abs()


OP = register(
    OpDef(
        name="scale",
        kind="linear",
        forward=_forward,
        shape=_shape,
        interval=_interval,
        abs_linear=_abs,
    )
)

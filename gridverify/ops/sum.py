"""sum(x; axes) = x summed over ``axes`` (axes of the unbatched shape; negative counts from the end)."""

import torch
from torch import Tensor

from gridverify.ops.registry import batch_axis, monotone_linear, register


def _forward(x: Tensor, axes: tuple[int, ...]) -> Tensor:
    return x.sum(dim=[batch_axis(a) for a in axes])


def _shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    dims = {a % len(shape) for a in axes}
    if len(dims) != len(axes):
        raise ValueError(f"sum axes {axes} repeat an axis of shape {shape}")
    return tuple(s for i, s in enumerate(shape) if i not in dims)


OP = register(
    monotone_linear(
        "sum",
        _forward,
        shape=_shape,
        mixes=True,
        torch_functions=(torch.sum, "sum"),
        onnx_types=("ReduceSum",),
    )
)

"""Structural linear ops, all exact and monotone (interval = image of the corners):

- ``gather(x; index)``: ``y = x.flatten()[index]``, shaped like the integer constant ``index``
  (covers slicing, selection, repetition and broadcasting to a larger shape);
- ``concat(x1, ..., xk; axis)``;
- ``reshape(x; shape)``;
- ``permute(x; dims)``.
"""

from typing import Any

import torch
from torch import Tensor

from gridverify.const import Const
from gridverify.ops.registry import batch_axis, monotone_linear, register


def _gather(x: Tensor, index: Any) -> Tensor:
    idx = index.like(x)
    return x.reshape(x.shape[0], -1)[:, idx.reshape(-1)].reshape(x.shape[0], *idx.shape)


def _gather_shape(shape: tuple[int, ...], index: Const) -> tuple[int, ...]:
    size = 1
    for s in shape:
        size *= s
    t = index.tensor
    if t.dtype != torch.int64 or (t.numel() and (int(t.min()) < 0 or int(t.max()) >= size)):
        raise ValueError(f"gather index must be int64 in [0, {size}) for input shape {shape}")
    return index.shape


def _concat(*xs: Tensor, axis: int) -> Tensor:
    batch = max(x.shape[0] for x in xs)  # constants carry a batch of 1
    return torch.cat([x.expand(batch, *x.shape[1:]) for x in xs], dim=batch_axis(axis))


def _concat_shape(*shapes: tuple[int, ...], axis: int) -> tuple[int, ...]:
    first = shapes[0]
    ax = axis % len(first)
    for s in shapes:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != ax):
            raise ValueError(f"concat along axis {axis} needs matching shapes, got {shapes}")
    return (*first[:ax], sum(s[ax] for s in shapes), *first[ax + 1 :])


def _reshape(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    return x.reshape(x.shape[0], *shape)


def _reshape_shape(shape: tuple[int, ...], shape_out: tuple[int, ...]) -> tuple[int, ...]:
    n_in = int(torch.Size(shape).numel())
    n_out = int(torch.Size(shape_out).numel())
    if n_in != n_out:
        raise ValueError(f"reshape from {shape} to {shape_out} changes the size")
    return tuple(shape_out)


def _reshape_forward(x: Tensor, shape: tuple[int, ...]) -> Tensor:
    return _reshape(x, shape)


def _permute(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    return x.permute(0, *(d + 1 for d in dims))


def _permute_shape(shape: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    if sorted(dims) != list(range(len(shape))):
        raise ValueError(f"permute dims {dims} is not a permutation of the axes of shape {shape}")
    return tuple(shape[d] for d in dims)


GATHER = register(
    monotone_linear("gather", _gather, shape=_gather_shape, onnx_types=("Gather", "Slice", "Expand"))
)
CONCAT = register(
    monotone_linear(
        "concat",
        _concat,
        arity=-1,
        shape=_concat_shape,
        torch_functions=(torch.cat, torch.concat),
        onnx_types=("Concat",),
    )
)
RESHAPE = register(
    monotone_linear(
        "reshape",
        _reshape_forward,
        shape=lambda s, shape: _reshape_shape(s, shape),
        torch_functions=("reshape", "view", torch.reshape),
        onnx_types=("Reshape", "Flatten", "Squeeze", "Unsqueeze"),
    )
)
PERMUTE = register(
    monotone_linear(
        "permute",
        _permute,
        shape=_permute_shape,
        torch_functions=("permute", torch.permute),
        onnx_types=("Transpose",),
    )
)

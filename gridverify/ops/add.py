"""add(x, y) = x + y (broadcasting), sub(x, y) = x - y, neg(x) = -x: exact linear ops."""

import operator

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, elementwise_shape, monotone_interval, register, same_shape


def _add(x: Tensor, y: Tensor) -> Tensor:
    return x + y


def _sub(x: Tensor, y: Tensor) -> Tensor:
    return x - y


def _neg(x: Tensor) -> Tensor:
    return -x


def _sub_interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    return lows[0] - ups[1], ups[0] - lows[1]


def _neg_interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    return -ups[0], -lows[0]


ADD = register(
    OpDef(
        name="add",
        mixes=True,
        kind="linear",
        arity=2,
        forward=_add,
        shape=elementwise_shape,
        interval=monotone_interval(_add),
        sympy_heads=("Add",),
        torch_functions=(torch.add, operator.add, "add", "__add__"),
        onnx_types=("Add",),
    )
)
SUB = register(
    OpDef(
        name="sub",
        mixes=True,
        kind="linear",
        arity=2,
        forward=_sub,
        shape=elementwise_shape,
        interval=_sub_interval,
        torch_functions=(torch.sub, operator.sub, "sub", "__sub__"),
        onnx_types=("Sub",),
    )
)
NEG = register(
    OpDef(
        name="neg",
        kind="linear",
        arity=1,
        forward=_neg,
        shape=same_shape,
        interval=_neg_interval,
        torch_functions=(torch.neg, operator.neg, "neg", "__neg__"),
        onnx_types=("Neg",),
    )
)

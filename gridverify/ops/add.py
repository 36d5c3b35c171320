"""add(x, y) = x + y (broadcasting), sub(x, y) = x - y, neg(x) = -x: exact linear ops."""

import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, elementwise_shape, monotone_linear, operator_calls, register


def _add(x: Tensor, y: Tensor) -> Tensor:
    return x + y


def _sub(x: Tensor, y: Tensor) -> Tensor:
    return x - y


def _neg(x: Tensor) -> Tensor:
    return -x


def _binary(name: str, forward: Callable[..., Tensor], **facts: Any) -> OpDef:
    """``x (op) y`` elementwise with broadcasting: an output entry combines one entry of each input."""
    return monotone_linear(name, forward, arity=2, shape=elementwise_shape, mixes=True, **facts)


ADD = register(
    _binary(
        "add",
        _add,
        sympy_heads=("Add",),
        torch_functions=operator_calls(torch.add, operator.add),
        onnx_types=("Add",),
    )
)
SUB = register(
    _binary(
        "sub",
        _sub,
        decreasing=(1,),
        torch_functions=operator_calls(torch.sub, operator.sub),
        onnx_types=("Sub",),
    )
)
NEG = register(
    monotone_linear(
        "neg",
        _neg,
        decreasing=(0,),
        torch_functions=operator_calls(torch.neg, operator.neg),
        onnx_types=("Neg",),
    )
)

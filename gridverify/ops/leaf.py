"""Leaves of the graph: ``input`` (a named, perturbed input) and ``const`` (a constant tensor).

Neither is evaluated by an op function: `Graph.forward` binds inputs and broadcasts constants. In bound
propagation an input's box is given by the caller and a constant's box is its value.
"""

from typing import Any

from torch import Tensor

from gridverify.const import Const
from gridverify.ops.registry import OpDef, register


def _leaf_forward(*args: Any, **params: Any) -> Tensor:
    raise TypeError("leaves are bound by Graph.forward, not evaluated")


def _input_shape(*, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape)


def _const_shape(*, value: Const) -> tuple[int, ...]:
    return value.shape


INPUT = register(OpDef(name="input", kind="leaf", arity=0, forward=_leaf_forward, shape=_input_shape))
CONST = register(OpDef(name="const", kind="leaf", arity=0, forward=_leaf_forward, shape=_const_shape))

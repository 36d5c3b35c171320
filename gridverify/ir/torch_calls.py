"""Translations of torch calls into builder calls, and the lookup tables that pick them (see
`gridverify.ir.from_torch` for the batch convention).

`torch_tables` maps fx targets (functions for ``call_function``, method names for ``call_method``,
``nn.Module`` classes for ``call_module``) to handler names, derived from each op's ``torch_functions`` in
`REGISTRY`, plus the calls that are no single op (``getitem``, ``flatten``, ``div``, ...). A handler takes
``(builder, *torch args, **torch kwargs)`` and returns a `Var` or a python value; it raises `Unsupported`
with the reason for a call it does not translate.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ops import REGISTRY, OpDef

Shape = tuple[int, ...]


class Unsupported(Exception):
    """Raised by a handler for a call it does not translate; the message says why."""


class _BatchSize:
    """The batch size N: not static, so only usable as the leading entry of a shape."""

    def __repr__(self) -> str:
        return "N"


BATCH = _BatchSize()


# -- lookup tables --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchTables:
    """fx target -> handler name, for each kind of fx call."""

    functions: Mapping[Callable[..., Any], str]
    methods: Mapping[str, str]
    modules: Mapping[type, str]


def _target_kind(target: Any) -> str:
    if isinstance(target, str):
        return "methods"
    if isinstance(target, type) and issubclass(target, nn.Module):
        return "modules"
    if callable(target):
        return "functions"
    raise ValueError(f"torch target {target!r} is no function, method name or nn.Module class")


def torch_tables(registry: Mapping[str, OpDef] = REGISTRY) -> TorchTables:
    """The lookup tables: every ``torch_functions`` entry of ``registry`` plus the front-end calls."""
    tables: dict[str, dict[Any, str]] = {"functions": {}, "methods": {}, "modules": {}}
    derived = [(t, op.name) for op in registry.values() for t in op.torch_functions]
    front_end = [(t, name) for name, (_, targets) in _handlers().items() for t in targets]
    for target, name in (*derived, *front_end):
        table = tables[_target_kind(target)]
        if table.setdefault(target, name) != name:
            raise ValueError(f"torch target {target!r} claimed by {table[target]!r} and {name!r}")
    return TorchTables(**{kind: MappingProxyType(t) for kind, t in tables.items()})


# -- argument plumbing ------------------------------------------------------------------------------
def _unbatch_const(value: Any, rank: int) -> Any:
    """A constant operand against a traced tensor of unbatched rank ``rank``: without batch dim, python
    numbers as floats (so ``x + 1`` and ``x + 1.0`` intern to one node)."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, Tensor) or value.ndim <= rank:
        return value
    if value.ndim == rank + 1 and value.shape[0] == 1:
        return value[0]
    raise Unsupported(f"a constant of shape {tuple(value.shape)} broadcasts against the batch dim")


def _operands(*values: Any) -> tuple[Any, ...]:
    ranks = {len(v.shape) for v in values if isinstance(v, Var)}
    if len(ranks) > 1:
        raise Unsupported("traced tensors of different ranks broadcast against the batch dim")
    rank = max(ranks, default=0)
    return tuple(_unbatch_const(v, rank) for v in values)


def _axis(x: Var, dim: int, extra: int = 0) -> int:
    """Unbatched axis of the batched ``dim`` of ``x`` (which will have ``extra`` more dims)."""
    nd = len(x.shape) + 1 + extra
    if not -nd <= int(dim) < nd:
        raise ValueError(f"dim {dim} out of range for a tensor of {nd} dims")
    if int(dim) % nd == 0:
        raise Unsupported(f"dim {dim} is the batch dim")
    return int(dim) % nd - 1


def _axes(x: Var, dim: Any) -> tuple[int, ...]:
    if dim is None:
        raise Unsupported("a reduction over every dim, the batch included")
    return tuple(_axis(x, d) for d in _as_tuple(dim))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _sizes(args: Sequence[Any]) -> tuple[Any, ...]:
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` alike."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _unbatched_shape(x: Var, shape: tuple[Any, ...]) -> Shape:
    """The unbatched target of ``reshape(x, shape)``; ``shape[0]`` must be the batch (N or -1)."""
    head, rest, n = shape[0], list(shape[1:]), math.prod(x.shape)
    if any(s is BATCH for s in rest) or not (head is BATCH or head == -1):
        raise Unsupported(f"reshape to {shape} does not keep the batch dim first")
    if -1 in rest and head is BATCH:
        rest[rest.index(-1)] = n // max(math.prod(s for s in rest if s != -1), 1)
    if math.prod(rest) != n:
        raise Unsupported(f"reshape of {x.shape} to {shape} moves elements across the batch dim")
    return tuple(int(s) for s in rest)


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
        return float(value)
    shown = "a traced tensor" if isinstance(value, Var) else repr(value)
    raise Unsupported(f"{what} is {shown}, not a constant number")


# -- handlers: (builder, *torch args, **torch kwargs) -> Var or python value --------------------------
def elementwise(op: str, b: GraphBuilder, *operands: Any, inplace: bool = False) -> Var:
    return b.apply(op, *_operands(*operands))


def _linear(b: GraphBuilder, x: Var, weight: Any, bias: Any = None) -> Var:
    if isinstance(weight, Var) or isinstance(bias, Var):
        raise Unsupported("a traced weight or bias")
    return b.linear(x, weight, bias)


def _matmul(b: GraphBuilder, x: Any, y: Any) -> Var:
    """A constant operand is a matrix or vector of torch's shape (no batch dim to strip)."""
    if isinstance(x, Var) and isinstance(y, Var):
        return b.matmul(*_operands(x, y))
    var, const = (x, y) if isinstance(x, Var) else (y, x)
    if const.ndim > 2 or (var is y and len(y.shape) < 2):
        raise Unsupported(f"a constant of shape {tuple(const.shape)} against the batch dim")
    if const.ndim == 2:
        return b.matmul(x, y)
    if var is x:  # x @ v: contract the last axis
        return b.reshape(b.linear(x, const.reshape(1, -1)), x.shape[:-1])
    return b.reshape(b.matmul(const.reshape(1, -1), y), (*y.shape[:-2], y.shape[-1]))


def _add_or_sub(op: str, b: GraphBuilder, x: Any, y: Any, alpha: Any = 1) -> Var:
    x, y = _operands(x, y)
    return b.apply(op, x, y if alpha == 1 else b.mul(y, alpha))


def _mul(b: GraphBuilder, x: Any, y: Any) -> Var:
    return b.mul(*_operands(x, y))


def _div(b: GraphBuilder, x: Any, y: Any, rounding_mode: str | None = None) -> Var:
    if rounding_mode not in (None, "floor"):
        raise Unsupported(f"rounding_mode={rounding_mode!r}")
    quotient = b.div(*_operands(x, y))
    return quotient if rounding_mode is None else b.apply("floor", quotient)


def _power(b: GraphBuilder, x: Any, exponent: Any) -> Var:
    if not isinstance(x, Var):
        raise Unsupported("a constant base with a traced exponent")
    e = _scalar(exponent, "the exponent")
    if e == 0.5:
        return b.apply("sqrt", x)
    if e != int(e):
        raise Unsupported(f"exponent {e} (integers and 0.5 only)")
    return b.power(x, int(e))


def _clip(b: GraphBuilder, x: Var, min: Any = None, max: Any = None) -> Var:
    lo = -math.inf if min is None else _scalar(min, "clamp bound")
    hi = math.inf if max is None else _scalar(max, "clamp bound")
    if lo > hi:
        raise Unsupported(f"clamp with min {lo} > max {hi}")
    if lo == 0 and hi == math.inf:
        return b.apply("relu", x)
    return x if (lo, hi) == (-math.inf, math.inf) else b.apply("clip", x, lo=lo, hi=hi)


def _hardtanh(b: GraphBuilder, x: Var, min_val: Any = -1.0, max_val: Any = 1.0, inplace: bool = False) -> Var:
    return _clip(b, x, min_val, max_val)


def _gelu(b: GraphBuilder, x: Var, approximate: str = "none") -> Var:
    if approximate != "none":
        raise Unsupported(f"approximate={approximate!r}; only the exact erf form is supported")
    return b.apply("gelu", x)


def _dropout(b: GraphBuilder, x: Var, p: float = 0.5, training: bool = True, inplace: bool = False) -> Var:
    if training and p > 0:
        raise Unsupported("dropout in training mode; call module.eval() first")
    return x


def _identity(b: GraphBuilder, x: Var, *args: Any, **kwargs: Any) -> Var:
    return x


def _inner_key(key: Any) -> tuple[Any, ...]:
    """The unbatched part of a torch index, which must leave the batch dim alone (``x[:, ...]``)."""
    parts = tuple(np.asarray(k) if isinstance(k, (Tensor, list)) else k for k in _as_tuple(key))
    if any(isinstance(k, Var) for k in parts):
        raise Unsupported("indexing with a traced tensor")
    arrays = [k for k in parts if isinstance(k, np.ndarray)]
    if arrays and (len(arrays) > 1 or any(isinstance(k, int) for k in parts)):
        raise Unsupported("an index array with other integer indices (torch and numpy order differ)")
    if parts and parts[0] is Ellipsis:
        return parts
    if parts and isinstance(parts[0], slice) and parts[0] == slice(None):
        return parts[1:]
    raise Unsupported(f"indexing with {key} does not keep the batch dim (start with ':' or '...')")


def _getitem(b: GraphBuilder, x: Any, key: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return x[key]
    if not isinstance(x, Var):
        raise Unsupported("indexing a constant with a traced tensor")
    try:
        return b.index(x, _inner_key(key))
    except IndexError as err:
        raise Unsupported(f"index {key} out of range or reaching the batch dim: {err}") from None


def _getattr(b: GraphBuilder, x: Var, name: str) -> Any:
    if name == "shape":
        return (BATCH, *x.shape)
    if name == "ndim":
        return len(x.shape) + 1
    raise Unsupported(f"attribute Tensor.{name}")


def _size(b: GraphBuilder, x: Var, dim: int | None = None) -> Any:
    full = (BATCH, *x.shape)
    return full if dim is None else full[dim]


def _dim(b: GraphBuilder, x: Var) -> int:
    return len(x.shape) + 1


def _reshape(b: GraphBuilder, x: Var, *shape: Any) -> Var:
    return b.reshape(x, _unbatched_shape(x, _sizes(shape)))


def _flatten(b: GraphBuilder, x: Var, start_dim: int = 0, end_dim: int = -1) -> Var:
    full = (1, *x.shape)
    s, e = start_dim % len(full), end_dim % len(full)
    if s == 0 and e > 0:
        raise Unsupported("flatten from dim 0 merges the batch dim (use start_dim=1)")
    if s >= e:
        return x
    return b.reshape(x, (*full[1:s], math.prod(full[s : e + 1]), *full[e + 1 :]))


def _permute(b: GraphBuilder, x: Var, *dims: Any) -> Var:
    nd = len(x.shape) + 1
    order = [int(d) % nd for d in _sizes(dims)]
    if len(order) != nd or order[0] != 0:
        raise Unsupported(f"permute {tuple(order)} moves the batch dim")
    return b.permute(x, [d - 1 for d in order[1:]])


def _transpose(b: GraphBuilder, x: Var, dim0: int, dim1: int) -> Var:
    order = list(range(len(x.shape)))
    a0, a1 = _axis(x, dim0), _axis(x, dim1)
    order[a0], order[a1] = order[a1], order[a0]
    return b.permute(x, order)


def _unsqueeze(b: GraphBuilder, x: Var, dim: int) -> Var:
    shape = list(x.shape)
    shape.insert(_axis(x, dim, extra=1), 1)
    return b.reshape(x, shape)


def _squeeze(b: GraphBuilder, x: Var, dim: Any = None) -> Var:
    """Without ``dim``, unbatched axes of size 1 only: the batch stays even when N = 1."""
    axes = range(len(x.shape)) if dim is None else _axes(x, dim)
    return b.reshape(x, [s for i, s in enumerate(x.shape) if not (i in axes and s == 1)])


def _concat(b: GraphBuilder, tensors: Sequence[Any], dim: int = 0) -> Var:
    if not all(isinstance(t, Var) for t in tensors):
        raise Unsupported("concatenating constants with traced tensors")
    _operands(*tensors)
    return b.concat(tensors, _axis(tensors[0], dim))


def _sum(b: GraphBuilder, x: Var, dim: Any = None, keepdim: bool = False) -> Var:
    axes = _axes(x, dim)
    total = b.sum(x, axes)
    return b.reshape(total, [1 if i in axes else s for i, s in enumerate(x.shape)]) if keepdim else total


def _mean(b: GraphBuilder, x: Var, dim: Any = None, keepdim: bool = False) -> Var:
    count = math.prod(x.shape[a] for a in _axes(x, dim))
    return b.mul(_sum(b, x, dim, keepdim), 1.0 / count)


def _softmax(b: GraphBuilder, x: Var, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Var:
    """Over one axis, as the ONNX front end computes it (`gridverify.ir.onnx_ops.softmax_last`)."""
    from gridverify.ir.onnx_ops import OnnxContext, softmax_last
    from gridverify.ir.onnx_shape_ops import move_back, move_last

    if dim is None:
        raise Unsupported("softmax without dim")
    moved, order = move_last(b, x, _axis(x, dim))
    return move_back(b, softmax_last(b, moved, OnnxContext(b)), order)


def _leaky_relu(b: GraphBuilder, x: Var, negative_slope: float = 0.01, inplace: bool = False) -> Var:
    return b.apply("leaky_relu", x, negative_slope=float(negative_slope))


def _handlers() -> dict[str, tuple[Callable[..., Any] | None, tuple[Any, ...]]]:
    """Handler per name (None: the registered op, elementwise), with targets the registry does not list."""
    return {
        "linear": (_linear, ()),
        "matmul": (_matmul, ()),
        "add": (functools.partial(_add_or_sub, "add"), ()),
        "sub": (functools.partial(_add_or_sub, "sub"), ()),
        "mul": (_mul, ()),
        "div": (_div, (operator.truediv, torch.div, torch.true_divide, "div", "true_divide")),
        "power": (_power, ()),
        "clip": (_clip, (nn.Hardtanh,)),
        "hardtanh": (_hardtanh, (F.hardtanh,)),
        "gelu": (_gelu, ()),
        "dropout": (_dropout, (F.dropout, nn.Dropout)),
        "identity": (_identity, (nn.Identity, "contiguous")),
        "getitem": (_getitem, (operator.getitem,)),
        "getattr": (_getattr, (getattr,)),
        "size": (_size, ("size",)),
        "dim": (_dim, ("dim", "ndimension")),
        "reshape": (_reshape, ()),
        "flatten": (_flatten, (torch.flatten, "flatten", nn.Flatten)),
        "permute": (_permute, ()),
        "transpose": (_transpose, (torch.transpose, "transpose")),
        "unsqueeze": (_unsqueeze, (torch.unsqueeze, "unsqueeze")),
        "squeeze": (_squeeze, (torch.squeeze, "squeeze")),
        "concat": (_concat, ()),
        "sum": (_sum, ()),
        "mean": (_mean, (torch.mean, "mean")),
        "softmax": (_softmax, (torch.softmax, F.softmax, "softmax", nn.Softmax)),
        "leaky_relu": (_leaky_relu, (F.leaky_relu, "leaky_relu", nn.LeakyReLU)),
    }


HANDLERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {k: h for k, (h, _) in _handlers().items() if h}
)
TABLES = torch_tables()


def module_arguments(module: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A module's state as the extra arguments of its functional form."""
    if isinstance(module, nn.Linear):
        return (module.weight, module.bias), {}
    if isinstance(module, nn.GELU):
        return (), {"approximate": module.approximate}
    if isinstance(module, nn.Flatten):
        return (module.start_dim, module.end_dim), {}
    if isinstance(module, nn.Hardtanh):
        return (), {"min": module.min_val, "max": module.max_val}
    if isinstance(module, nn.Dropout):
        return (module.p, module.training), {}
    if isinstance(module, nn.Softmax):
        return (module.dim,), {}
    if isinstance(module, nn.LeakyReLU):
        return (module.negative_slope,), {}
    return (), {}

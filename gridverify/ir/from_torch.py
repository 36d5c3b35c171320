"""Torch front end: `from_torch` traces an ``nn.Module`` with torch.fx and rebuilds it with `GraphBuilder`.

Batch convention: graph shapes leave out the batch dimension and the module runs on ``(N, *shape)``. So a
``dim`` argument counts the batch (``dim=d > 0`` is axis ``d - 1``), a shape argument keeps the batch first
(``x.view(x.size(0), -1)`` or ``x.view(-1, 4, 4)``), and a constant of shape ``(1, *S)`` broadcasts over the
batch as a constant of shape ``S``. A call that would move or mix the batch dim (``flatten`` from dim 0,
``sum`` over every dim, indexing the batch) is unsupported.

Lookup: `torch_tables` maps fx targets (functions for ``call_function``, method names for ``call_method``,
``nn.Module`` classes for ``call_module``) to handler names, derived from each op's ``torch_functions`` in
`REGISTRY`, plus the calls that are no single op (``getitem``, ``flatten``, ``div``, ...). A handler turns
torch's arguments into builder calls; a registered op without one is applied elementwise. Calls on
constants only (weight preprocessing, static shape arithmetic) run eagerly in torch. Everything unsupported
is collected and raised at once as `UnsupportedOpError`.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.graph import Graph
from gridverify.ops import REGISTRY, OpDef

__all__ = [
    "HANDLERS",
    "TABLES",
    "TorchTables",
    "TorchTraceError",
    "UnsupportedOpError",
    "from_torch",
    "torch_tables",
]

Shape = tuple[int, ...]


class UnsupportedOpError(ValueError):
    """Torch calls the front end cannot translate, each as ``(what, fx node name)``."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(f"{what} at node {node!r}" for what, node in self.problems)
        super().__init__(f"unsupported torch operations ({len(self.problems)}): {listed}")


class TorchTraceError(ValueError):
    """torch.fx could not trace the module (typically data-dependent control flow)."""


class _Unsupported(Exception):
    """Raised by a handler for a call it does not translate; the message says why."""


class _BatchSize:
    """The batch size N: not static, so only usable as the leading entry of a shape."""

    def __repr__(self) -> str:
        return "N"


_BATCH = _BatchSize()
_MISSING = object()  # value of a node that could not be converted


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
    raise _Unsupported(f"a constant of shape {tuple(value.shape)} broadcasts against the batch dim")


def _operands(*values: Any) -> tuple[Any, ...]:
    ranks = {len(v.shape) for v in values if isinstance(v, Var)}
    if len(ranks) > 1:
        raise _Unsupported("traced tensors of different ranks broadcast against the batch dim")
    rank = max(ranks, default=0)
    return tuple(_unbatch_const(v, rank) for v in values)


def _axis(x: Var, dim: int, extra: int = 0) -> int:
    """Unbatched axis of the batched ``dim`` of ``x`` (which will have ``extra`` more dims)."""
    nd = len(x.shape) + 1 + extra
    if not -nd <= int(dim) < nd:
        raise ValueError(f"dim {dim} out of range for a tensor of {nd} dims")
    if int(dim) % nd == 0:
        raise _Unsupported(f"dim {dim} is the batch dim")
    return int(dim) % nd - 1


def _axes(x: Var, dim: Any) -> tuple[int, ...]:
    if dim is None:
        raise _Unsupported("a reduction over every dim, the batch included")
    return tuple(_axis(x, d) for d in _as_tuple(dim))


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _sizes(args: Sequence[Any]) -> tuple[Any, ...]:
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` alike."""
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _unbatched_shape(x: Var, shape: tuple[Any, ...]) -> Shape:
    """The unbatched target of ``reshape(x, shape)``; ``shape[0]`` must be the batch (N or -1)."""
    head, rest, n = shape[0], list(shape[1:]), math.prod(x.shape)
    if any(s is _BATCH for s in rest) or not (head is _BATCH or head == -1):
        raise _Unsupported(f"reshape to {shape} does not keep the batch dim first")
    if -1 in rest and head is _BATCH:
        rest[rest.index(-1)] = n // max(math.prod(s for s in rest if s != -1), 1)
    if math.prod(rest) != n:
        raise _Unsupported(f"reshape of {x.shape} to {shape} moves elements across the batch dim")
    return tuple(int(s) for s in rest)


def _scalar(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) or (isinstance(value, Tensor) and value.numel() == 1):
        return float(value)
    shown = "a traced tensor" if isinstance(value, Var) else repr(value)
    raise _Unsupported(f"{what} is {shown}, not a constant number")


# -- handlers: (builder, *torch args, **torch kwargs) -> Var or python value --------------------------
def _elementwise(op: str, b: GraphBuilder, *operands: Any, inplace: bool = False) -> Var:
    return b.apply(op, *_operands(*operands))


def _linear(b: GraphBuilder, x: Var, weight: Any, bias: Any = None) -> Var:
    if isinstance(weight, Var) or isinstance(bias, Var):
        raise _Unsupported("a traced weight or bias")
    return b.linear(x, weight, bias)


def _matmul(b: GraphBuilder, x: Any, y: Any) -> Var:
    """A constant operand is a matrix or vector of torch's shape (no batch dim to strip)."""
    if isinstance(x, Var) and isinstance(y, Var):
        return b.matmul(*_operands(x, y))
    var, const = (x, y) if isinstance(x, Var) else (y, x)
    if const.ndim > 2 or (var is y and len(y.shape) < 2):
        raise _Unsupported(f"a constant of shape {tuple(const.shape)} against the batch dim")
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
        raise _Unsupported(f"rounding_mode={rounding_mode!r}")
    quotient = b.div(*_operands(x, y))
    return quotient if rounding_mode is None else b.apply("floor", quotient)


def _power(b: GraphBuilder, x: Any, exponent: Any) -> Var:
    if not isinstance(x, Var):
        raise _Unsupported("a constant base with a traced exponent")
    e = _scalar(exponent, "the exponent")
    if e == 0.5:
        return b.apply("sqrt", x)
    if e != int(e):
        raise _Unsupported(f"exponent {e} (integers and 0.5 only)")
    return b.power(x, int(e))


def _clip(b: GraphBuilder, x: Var, min: Any = None, max: Any = None) -> Var:
    lo = -math.inf if min is None else _scalar(min, "clamp bound")
    hi = math.inf if max is None else _scalar(max, "clamp bound")
    if lo > hi:
        raise _Unsupported(f"clamp with min {lo} > max {hi}")
    if lo == 0 and hi == math.inf:
        return b.apply("relu", x)
    return x if (lo, hi) == (-math.inf, math.inf) else b.apply("clip", x, lo=lo, hi=hi)


def _hardtanh(b: GraphBuilder, x: Var, min_val: Any = -1.0, max_val: Any = 1.0, inplace: bool = False) -> Var:
    return _clip(b, x, min_val, max_val)


def _gelu(b: GraphBuilder, x: Var, approximate: str = "none") -> Var:
    if approximate != "none":
        raise _Unsupported(f"approximate={approximate!r}; only the exact erf form is supported")
    return b.apply("gelu", x)


def _dropout(b: GraphBuilder, x: Var, p: float = 0.5, training: bool = True, inplace: bool = False) -> Var:
    if training and p > 0:
        raise _Unsupported("dropout in training mode; call module.eval() first")
    return x


def _identity(b: GraphBuilder, x: Var, *args: Any, **kwargs: Any) -> Var:
    return x


def _inner_key(key: Any) -> tuple[Any, ...]:
    """The unbatched part of a torch index, which must leave the batch dim alone (``x[:, ...]``)."""
    parts = tuple(np.asarray(k) if isinstance(k, (Tensor, list)) else k for k in _as_tuple(key))
    if any(isinstance(k, Var) for k in parts):
        raise _Unsupported("indexing with a traced tensor")
    arrays = [k for k in parts if isinstance(k, np.ndarray)]
    if arrays and (len(arrays) > 1 or any(isinstance(k, int) for k in parts)):
        raise _Unsupported("an index array with other integer indices (torch and numpy order differ)")
    if parts and parts[0] is Ellipsis:
        return parts
    if parts and isinstance(parts[0], slice) and parts[0] == slice(None):
        return parts[1:]
    raise _Unsupported(f"indexing with {key} does not keep the batch dim (start with ':' or '...')")


def _getitem(b: GraphBuilder, x: Any, key: Any) -> Any:
    if isinstance(x, (tuple, list)):
        return x[key]
    if not isinstance(x, Var):
        raise _Unsupported("indexing a constant with a traced tensor")
    try:
        return b.index(x, _inner_key(key))
    except IndexError as err:
        raise _Unsupported(f"index {key} out of range or reaching the batch dim: {err}") from None


def _getattr(b: GraphBuilder, x: Var, name: str) -> Any:
    if name == "shape":
        return (_BATCH, *x.shape)
    if name == "ndim":
        return len(x.shape) + 1
    raise _Unsupported(f"attribute Tensor.{name}")


def _size(b: GraphBuilder, x: Var, dim: int | None = None) -> Any:
    full = (_BATCH, *x.shape)
    return full if dim is None else full[dim]


def _dim(b: GraphBuilder, x: Var) -> int:
    return len(x.shape) + 1


def _reshape(b: GraphBuilder, x: Var, *shape: Any) -> Var:
    return b.reshape(x, _unbatched_shape(x, _sizes(shape)))


def _flatten(b: GraphBuilder, x: Var, start_dim: int = 0, end_dim: int = -1) -> Var:
    full = (1, *x.shape)
    s, e = start_dim % len(full), end_dim % len(full)
    if s == 0 and e > 0:
        raise _Unsupported("flatten from dim 0 merges the batch dim (use start_dim=1)")
    if s >= e:
        return x
    return b.reshape(x, (*full[1:s], math.prod(full[s : e + 1]), *full[e + 1 :]))


def _permute(b: GraphBuilder, x: Var, *dims: Any) -> Var:
    nd = len(x.shape) + 1
    order = [int(d) % nd for d in _sizes(dims)]
    if len(order) != nd or order[0] != 0:
        raise _Unsupported(f"permute {tuple(order)} moves the batch dim")
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
        raise _Unsupported("concatenating constants with traced tensors")
    _operands(*tensors)
    return b.concat(tensors, _axis(tensors[0], dim))


def _sum(b: GraphBuilder, x: Var, dim: Any = None, keepdim: bool = False) -> Var:
    axes = _axes(x, dim)
    total = b.sum(x, axes)
    return b.reshape(total, [1 if i in axes else s for i, s in enumerate(x.shape)]) if keepdim else total


def _mean(b: GraphBuilder, x: Var, dim: Any = None, keepdim: bool = False) -> Var:
    count = math.prod(x.shape[a] for a in _axes(x, dim))
    return b.mul(_sum(b, x, dim, keepdim), 1.0 / count)


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
    }


HANDLERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {k: h for k, (h, _) in _handlers().items() if h}
)
TABLES = torch_tables()


def _module_arguments(module: nn.Module) -> tuple[tuple[Any, ...], dict[str, Any]]:
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
    return (), {}


# -- conversion -------------------------------------------------------------------------------------
def _leaves(value: Any) -> list[Any]:
    """Every value inside nested tuples, lists, dicts and slices."""
    found: list[Any] = []
    fx.node.map_aggregate(value, found.append)
    return found


def _function_name(fn: Any) -> str:
    name = getattr(fn, "__name__", repr(fn))
    for prefix, namespace in (("torch", torch), ("torch.nn.functional", F), ("operator", operator)):
        if getattr(namespace, name, None) is fn:
            return f"{prefix}.{name}"
    return f"{getattr(fn, '__module__', None) or '?'}.{name}"


class _Converter:
    """One pass over an fx graph: node -> `Var` (traced tensor), tensor (constant) or python value."""

    def __init__(self, gm: fx.GraphModule, shapes: Mapping[str, Shape]) -> None:
        self.gm, self.shapes = gm, shapes
        self.builder = GraphBuilder()
        self.env: dict[fx.Node, Any] = {}
        self.problems: list[tuple[str, str]] = []

    def run(self) -> Any:
        """Convert every node; return the value of the output node."""
        for node in self.gm.graph.nodes:
            if node.op == "output":
                return fx.node.map_arg(node.args[0], self.env.__getitem__)
            self.env[node] = self._value(node)
        raise ValueError("traced graph has no output node")

    def _value(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            name = str(node.target)
            return self.builder.input(name, self.shapes[name]) if name in self.shapes else node.args[0]
        if node.op == "get_attr":
            value = functools.reduce(getattr, str(node.target).split("."), self.gm)
            return value.detach() if isinstance(value, Tensor) else value
        return self._call(node)

    def _call(self, node: fx.Node) -> Any:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), self.env.__getitem__)
        leaves = list(_leaves((args, kwargs)))
        missing, traced = any(v is _MISSING for v in leaves), any(isinstance(v, Var) for v in leaves)
        key = self._key(node)
        if key is None and (missing or traced):
            return self._report(node)
        if missing:
            return _MISSING
        try:
            return self._apply(key, node, args, kwargs) if traced else self._eager(node, args, kwargs, leaves)
        except _Unsupported as err:
            return self._report(node, str(err))

    def _key(self, node: fx.Node) -> str | None:
        if node.op == "call_function":
            return TABLES.functions.get(node.target)  # type: ignore[arg-type]
        if node.op == "call_method":
            return TABLES.methods.get(str(node.target))
        mro = type(self.gm.get_submodule(str(node.target))).__mro__
        return next((TABLES.modules[c] for c in mro if c in TABLES.modules), None)

    def _apply(self, key: str, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if node.op == "call_module":
            extra_args, extra_kwargs = _module_arguments(self.gm.get_submodule(str(node.target)))
            args, kwargs = (*args, *extra_args), {**kwargs, **extra_kwargs}
        handler = HANDLERS.get(key) or functools.partial(_elementwise, key)
        try:
            inspect.signature(handler).bind(self.builder, *args, **kwargs)
        except TypeError as err:
            raise _Unsupported(f"arguments the front end does not take: {err}") from None
        return handler(self.builder, *args, **kwargs)

    def _eager(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any], leaves: list[Any]) -> Any:
        """Run a call on constants only in torch (weight preprocessing, static shape arithmetic)."""
        try:
            with torch.no_grad():
                if node.op == "call_method":
                    return getattr(args[0], str(node.target))(*args[1:], **kwargs)
                fn = self.gm.get_submodule(str(node.target)) if node.op == "call_module" else node.target
                return fn(*args, **kwargs)  # type: ignore[operator]
        except (TypeError, AttributeError) as err:
            if any(v is _BATCH for v in leaves):
                raise _Unsupported("arithmetic on the batch size N, which is not static") from err
            raise

    def _report(self, node: fx.Node, detail: str | None = None) -> Any:
        if node.op == "call_method":
            what = f"Tensor.{node.target}"
        elif node.op == "call_module":
            cls = type(self.gm.get_submodule(str(node.target)))
            what = f"{cls.__module__}.{cls.__qualname__}"
        else:
            what = _function_name(node.target)
        self.problems.append((what if detail is None else f"{what} ({detail})", node.name))
        return _MISSING


def _trace(module: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(module)
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... from user code
        raise TorchTraceError(
            f"torch.fx could not trace {type(module).__qualname__}: {err} "
            "(data-dependent control flow or python calls on traced tensors cannot be traced)"
        ) from err


def _input_shapes(gm: fx.GraphModule, given: Mapping[str, Sequence[int]] | Sequence[int]) -> dict[str, Shape]:
    """Unbatched shape per traced input; a lone shape is the first input's. Inputs with defaults may go."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    names = [str(n.target) for n in placeholders]
    shapes = dict(given) if isinstance(given, Mapping) else dict(zip(names[:1], [given], strict=False))
    unknown = set(shapes) - set(names)
    lacking = [str(n.target) for n in placeholders if str(n.target) not in shapes and not n.args]
    if unknown or lacking or not shapes:
        raise ValueError(f"forward takes inputs {names}: unknown {sorted(unknown)}, no shape for {lacking}")
    return {name: tuple(int(s) for s in shape) for name, shape in shapes.items()}


def _named_outputs(value: Any, output_names: Sequence[str] | None) -> dict[str, Any]:
    if isinstance(value, Mapping):
        names, values = [str(k) for k in value], list(value.values())
    elif isinstance(value, (tuple, list)):
        names, values = [f"y{i}" for i in range(len(value))], list(value)
    else:
        names, values = ["y"], [value]
    if output_names is not None:
        if len(output_names) != len(values):
            raise ValueError(f"{len(output_names)} output names for {len(values)} outputs")
        names = list(output_names)
    bad = [n for n, v in zip(names, values, strict=True) if not isinstance(v, (Var, Tensor))]
    if bad:
        raise ValueError(f"outputs {bad} are not tensors")
    return dict(zip(names, values, strict=True))


def from_torch(
    module: nn.Module,
    input_shapes: Mapping[str, tuple[int, ...]] | tuple[int, ...],
    output_names: Sequence[str] | None = None,
) -> Graph:
    """The `Graph` of ``module``, traced with torch.fx (see the module docstring for the batch convention).

    ``input_shapes`` gives the unbatched shape of each ``forward`` argument by name (a lone shape: the first
    argument); the module is called on ``(N, *shape)``. Parameters and buffers become constants. Outputs are
    named ``"y"`` (one tensor), ``"y0", "y1", ...`` (tuple or list), by key (dict), or by ``output_names``.
    Raises `UnsupportedOpError` listing every untranslatable call, `TorchTraceError` if tracing fails.
    The module is not modified; put it in eval mode first if it has dropout.
    """
    gm = _trace(module)
    converter = _Converter(gm, _input_shapes(gm, input_shapes))
    result = converter.run()
    if converter.problems:
        raise UnsupportedOpError(converter.problems)
    outputs = _named_outputs(result, output_names)
    return converter.builder.build({name: converter.builder.lift(v) for name, v in outputs.items()})

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
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.graph import Graph
from gridverify.ir.torch_calls import (
    BATCH,
    HANDLERS,
    TABLES,
    TorchTables,
    Unsupported,
    elementwise,
    module_arguments,
    torch_tables,
)

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


_MISSING = object()  # value of a node that could not be converted


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
            if traced and key is not None:  # a traced call without a key was reported above
                return self._apply(key, node, args, kwargs)
            return self._eager(node, args, kwargs, leaves)
        except Unsupported as err:
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
            extra_args, extra_kwargs = module_arguments(self.gm.get_submodule(str(node.target)))
            args, kwargs = (*args, *extra_args), {**kwargs, **extra_kwargs}
        handler = HANDLERS.get(key) or functools.partial(elementwise, key)
        try:
            inspect.signature(handler).bind(self.builder, *args, **kwargs)
        except TypeError as err:
            raise Unsupported(f"arguments the front end does not take: {err}") from None
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
            if any(v is BATCH for v in leaves):
                raise Unsupported("arithmetic on the batch size N, which is not static") from err
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

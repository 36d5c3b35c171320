"""`GraphBuilder`: the one way to make graphs. Interns nodes, folds constants, applies local rewrites.

Rewrites (each keeps the value, and makes bounds no looser): ``x*x -> square(x)``; ``x*c`` and ``c*x`` with
a constant ``c`` -> ``scale``; ``x/y -> x * reciprocal(y)``; ``x/c -> scale(x, 1/c)``; ``x**2 -> square``,
``x**1 -> x``, ``x**0 -> 1``, ``x**-n -> reciprocal(x)**n``. Operations on constants only are evaluated
(float64) and become constants.

    b = GraphBuilder()
    x = b.input("x", (3,))
    y = b.sigmoid(b.linear(x, w, bias)) * 2.0
    graph = b.build({"y": y})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gridverify.const import Const
from gridverify.ir.graph import Graph, Node
from gridverify.ops import REGISTRY, get_op
from gridverify.ops.registry import elementwise_shape


@dataclass(frozen=True, eq=False)
class Var:
    """A handle on a node of a builder; arithmetic operators build new nodes."""

    builder: GraphBuilder
    id: int

    @property
    def node(self) -> Node:
        return self.builder.nodes[self.id]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def is_const(self) -> bool:
        return self.node.op == "const"

    def __add__(self, other: Any) -> Var:
        return self.builder.add(self, other)

    def __radd__(self, other: Any) -> Var:
        return self.builder.add(other, self)

    def __sub__(self, other: Any) -> Var:
        return self.builder.sub(self, other)

    def __rsub__(self, other: Any) -> Var:
        return self.builder.sub(other, self)

    def __mul__(self, other: Any) -> Var:
        return self.builder.mul(self, other)

    def __rmul__(self, other: Any) -> Var:
        return self.builder.mul(other, self)

    def __truediv__(self, other: Any) -> Var:
        return self.builder.div(self, other)

    def __rtruediv__(self, other: Any) -> Var:
        return self.builder.div(other, self)

    def __neg__(self) -> Var:
        return self.builder.neg(self)

    def __pow__(self, n: int) -> Var:
        return self.builder.power(self, n)

    def __matmul__(self, other: Any) -> Var:
        return self.builder.matmul(self, other)

    def __getitem__(self, key: Any) -> Var:
        return self.builder.index(self, key)


class GraphBuilder:
    """Builds a `Graph` node by node. ``b.<op>(x, ..., **params)`` applies any registered op."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._ids: dict[tuple[Any, ...], int] = {}
        self._inputs: list[tuple[str, int]] = []

    # -- core -------------------------------------------------------------------------------------
    def _add_node(self, op: str, inputs: tuple[int, ...], params: Mapping[str, Any], name: str | None) -> Var:
        shapes = [self.nodes[i].shape for i in inputs]
        shape = tuple(get_op(op).shape(*shapes, **params))
        node = Node(op, inputs, shape, tuple(sorted(params.items())), name)
        if node.key not in self._ids:
            self._ids[node.key] = len(self.nodes)
            self.nodes.append(node)
        return Var(self, self._ids[node.key])

    def input(self, name: str, shape: Sequence[int]) -> Var:
        if any(n == name for n, _ in self._inputs):
            raise ValueError(f"input {name!r} declared twice")
        var = self._add_node("input", (), {"name": name, "shape": tuple(int(s) for s in shape)}, name)
        self._inputs.append((name, var.id))
        return var

    def const(self, value: Any) -> Var:
        if isinstance(value, (bool, int)):
            value = float(value)  # x + 1 and x + 1.0 are one node
        c = value if isinstance(value, Const) else Const(value)
        return self._add_node("const", (), {"value": c}, None)

    def lift(self, value: Any) -> Var:
        """A `Var` of this builder, or a constant made from a number / array / tensor."""
        if isinstance(value, Var):
            if value.builder is not self:
                raise ValueError("Var belongs to another builder")
            return value
        return self.const(value)

    def apply(self, op: str, *args: Any, name: str | None = None, **params: Any) -> Var:
        """Apply a registered op; constant inputs only -> evaluated into a constant."""
        vars_ = [self.lift(a) for a in args]
        opdef = get_op(op)
        if opdef.kind == "leaf":
            raise ValueError(f"use input()/const() for {op!r}")
        if opdef.shape is elementwise_shape:
            vars_ = self._align_ranks(vars_)
        if vars_ and all(v.is_const for v in vars_):
            values = [v.node.kwargs["value"].tensor.unsqueeze(0) for v in vars_]
            return self.const(opdef.forward(*values, **params)[0])
        return self._add_node(op, tuple(v.id for v in vars_), params, name)

    def _align_ranks(self, vars_: list[Var]) -> list[Var]:
        """Give broadcasting inputs equal rank (leading 1s), so the batch axes line up."""
        rank = max(len(v.shape) for v in vars_)
        return [self.reshape(v, (1,) * (rank - len(v.shape)) + v.shape) for v in vars_]

    def __getattr__(self, op: str) -> Any:
        if op.startswith("_") or op not in REGISTRY:
            raise AttributeError(op)
        return lambda *args, **params: self.apply(op, *args, **params)

    def build(self, outputs: Var | Mapping[str, Var]) -> Graph:
        """The graph of the given outputs: unused nodes (other than inputs) dropped, ids renumbered."""
        raw = {"y": outputs} if isinstance(outputs, Var) else dict(outputs)
        outs = {name: self.lift(v) for name, v in raw.items()}
        keep = {i for _, i in self._inputs}
        for v in outs.values():
            keep |= _ancestors(self.nodes, v.id)
        order = sorted(keep)
        new_id = {old: new for new, old in enumerate(order)}
        nodes = tuple(
            Node(n.op, tuple(new_id[j] for j in n.inputs), n.shape, n.params, n.name)
            for n in (self.nodes[i] for i in order)
        )
        return Graph(
            nodes,
            tuple((name, new_id[i]) for name, i in self._inputs),
            tuple((name, new_id[v.id]) for name, v in outs.items()),
        )

    # -- linear ops with rewrites -------------------------------------------------------------------
    def add(self, x: Any, y: Any) -> Var:
        return self.apply("add", x, y)

    def sub(self, x: Any, y: Any) -> Var:
        return self.apply("sub", x, y)

    def neg(self, x: Any) -> Var:
        return self.apply("neg", x)

    def scale(self, x: Any, factor: Any) -> Var:
        c = factor if isinstance(factor, Const) else Const(factor)
        x = self.lift(x)
        if len(c.shape) > len(x.shape):
            x = self.reshape(x, (1,) * (len(c.shape) - len(x.shape)) + x.shape)
        return self.apply("scale", x, factor=c)

    def linear(self, x: Any, weight: Any, bias: Any = None) -> Var:
        w = weight if isinstance(weight, Const) else Const(weight)
        b = None if bias is None else (bias if isinstance(bias, Const) else Const(bias))
        return self.apply("linear", x, weight=w, bias=b)

    def sum(self, x: Any, axes: Sequence[int] | None = None) -> Var:
        x = self.lift(x)
        axes = tuple(range(len(x.shape))) if axes is None else tuple(int(a) for a in axes)
        return self.apply("sum", x, axes=axes)

    def reshape(self, x: Any, shape: Sequence[int]) -> Var:
        x = self.lift(x)
        shape = tuple(int(s) for s in shape)
        return x if shape == x.shape else self.apply("reshape", x, shape=shape)

    def permute(self, x: Any, dims: Sequence[int]) -> Var:
        dims = tuple(int(d) for d in dims)
        return self.lift(x) if dims == tuple(range(len(dims))) else self.apply("permute", x, dims=dims)

    def concat(self, xs: Sequence[Any], axis: int = 0) -> Var:
        vars_ = [self.lift(x) for x in xs]
        return vars_[0] if len(vars_) == 1 else self.apply("concat", *vars_, axis=int(axis))

    def gather(self, x: Any, index: Any) -> Var:
        """``x.flatten()[index]`` shaped like ``index``."""
        x = self.lift(x)
        idx = torch.as_tensor(np.asarray(index), dtype=torch.int64)
        if idx.numel() == _numel(x.shape) and bool((idx.reshape(-1) == torch.arange(idx.numel())).all()):
            return self.reshape(x, tuple(idx.shape))
        return self.apply("gather", x, index=Const(idx))

    def index(self, x: Any, key: Any) -> Var:
        """numpy-style indexing of the unbatched value (slices, integer arrays, None, ...) as a gather."""
        x = self.lift(x)
        flat = np.arange(_numel(x.shape)).reshape(x.shape)[key]
        return self.gather(x, np.asarray(flat))

    def broadcast_to(self, x: Any, shape: Sequence[int]) -> Var:
        x = self.lift(x)
        flat = np.broadcast_to(np.arange(_numel(x.shape)).reshape(x.shape), tuple(shape))
        return self.gather(x, np.ascontiguousarray(flat))

    # -- nonlinear ops with rewrites ----------------------------------------------------------------
    def mul(self, x: Any, y: Any) -> Var:
        x, y = self.lift(x), self.lift(y)
        if x.id == y.id:
            return self.apply("square", x)
        if y.is_const and not x.is_const:
            return self.scale(x, y.node.kwargs["value"])
        if x.is_const and not y.is_const:
            return self.scale(y, x.node.kwargs["value"])
        return self.apply("mul", x, y)

    def div(self, x: Any, y: Any) -> Var:
        x, y = self.lift(x), self.lift(y)
        if y.is_const:
            return self.mul(x, self.const(1.0 / y.node.kwargs["value"].tensor))
        return self.mul(x, self.apply("reciprocal", y))

    def power(self, value: Any, n: int) -> Var:
        x = self.lift(value)
        if int(n) != n:
            raise ValueError(f"power needs an integer exponent, got {n!r} (use sqrt / exp-log forms)")
        n = int(n)
        if n == 0:
            return self.const(torch.ones(x.shape, dtype=torch.float64))
        if n == 1:
            return x
        if n < 0:
            return self.power(self.apply("reciprocal", x), -n)
        return self.apply("square", x) if n == 2 else self.apply("power", x, exponent=n)

    def matmul(self, x: Any, y: Any) -> Var:
        x, y = self.lift(x), self.lift(y)
        if y.is_const and not x.is_const and len(y.shape) == 2:
            return self.linear(x, y.node.kwargs["value"].tensor.T)
        if x.is_const and not y.is_const and len(x.shape) == 2:
            nd = len(y.shape)
            swap = (*range(nd - 2), nd - 1, nd - 2)
            return self.permute(self.linear(self.permute(y, swap), x.node.kwargs["value"].tensor), swap)
        return self.apply("matmul", x, y)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _ancestors(nodes: list[Node], start: int) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for j in nodes[stack.pop()].inputs:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def rebuild(graph: Graph, expand_fused: bool = False) -> tuple[GraphBuilder, list[Var]]:
    """Copy ``graph`` into a new builder (optionally replacing fused ops by their decompositions)."""
    b = GraphBuilder()
    vals: list[Var] = []
    for node in graph.nodes:
        kw = node.kwargs
        if node.op == "input":
            vals.append(b.input(kw["name"], kw["shape"]))
        elif node.op == "const":
            vals.append(b.const(kw["value"]))
        elif expand_fused and (decompose := get_op(node.op).decompose) is not None:  # the fused ops
            vals.append(decompose(b, *(vals[j] for j in node.inputs), **kw))
        else:
            vals.append(b.apply(node.op, *(vals[j] for j in node.inputs), name=node.name, **kw))
    return b, vals


def lower_fused(graph: Graph) -> Graph:
    """The same function with every fused op (e.g. matmul of two variables) replaced by primitives."""
    if not any(get_op(n.op).kind == "fused" for n in graph.nodes):
        return graph
    b, vals = rebuild(graph, expand_fused=True)
    return b.build({name: vals[i] for name, i in graph.outputs})

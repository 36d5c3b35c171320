"""The IR: immutable nodes in a topologically ordered, validated `Graph`.

A `Node` is ``op`` (a registered op name), ``inputs`` (ids of earlier nodes), ``shape`` (the unbatched output
shape), ``params`` (sorted ``(key, value)`` pairs of hashable values: ints, floats, tuples, `Const`) and an
optional ``name``. Node ids are positions in ``Graph.nodes``. Identical ``(op, inputs, params)`` are one node
(the builder interns them), so common subexpressions exist once.

Invariants (checked by `validate`):
1. every node's op is registered, its arity matches, and its inputs are earlier nodes (topological order);
2. its shape equals the op's shape rule applied to its inputs' shapes and its params;
3. no two nodes share ``(op, inputs, params)``;
4. graph inputs are exactly the ``input`` nodes, with distinct names; outputs name existing nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch
from torch import Tensor

from gridverify.const import Const
from gridverify.ops import REGISTRY, get_op

Shape = tuple[int, ...]
Params = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[int, ...]
    shape: Shape
    params: Params = ()
    name: str | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, tuple[int, ...], Params]:
        return (self.op, self.inputs, self.params)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class GraphError(ValueError):
    """A graph breaks one of the IR's invariants (see `validate`)."""


@dataclass(frozen=True)
class Graph:
    """A computation graph: nodes in topological order, named inputs and outputs (name -> node id)."""

    nodes: tuple[Node, ...]
    inputs: tuple[tuple[str, int], ...]
    outputs: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        validate(self)

    @property
    def input_ids(self) -> dict[str, int]:
        return dict(self.inputs)

    @property
    def output_ids(self) -> dict[str, int]:
        return dict(self.outputs)

    def consumers(self) -> list[list[int]]:
        users: list[list[int]] = [[] for _ in self.nodes]
        for i, n in enumerate(self.nodes):
            for j in n.inputs:
                users[j].append(i)
        return users

    def ancestors(self, node_id: int) -> set[int]:
        seen, stack = {node_id}, [node_id]
        while stack:
            for j in self.nodes[stack.pop()].inputs:
                if j not in seen:
                    seen.add(j)
                    stack.append(j)
        return seen

    @overload
    def forward(
        self,
        inputs: Tensor | Mapping[str, Tensor],
        *,
        dtype: torch.dtype = ...,
        keep_all: Literal[False] = ...,
    ) -> dict[str, Tensor]: ...

    @overload
    def forward(
        self, inputs: Tensor | Mapping[str, Tensor], *, dtype: torch.dtype = ..., keep_all: Literal[True]
    ) -> list[Tensor]: ...

    def forward(
        self,
        inputs: Tensor | Mapping[str, Tensor],
        *,
        dtype: torch.dtype = torch.float64,
        keep_all: bool = False,
    ) -> dict[str, Tensor] | list[Tensor]:
        """Evaluate a batch: ``inputs`` maps input names to tensors ``(N, *shape)`` (a lone tensor when the
        graph has one input). Returns ``{output name: (N, *shape)}``, or every node's value if ``keep_all``.
        """
        feeds = self._feeds(inputs, dtype)
        ref = next(iter(feeds.values()))
        values: list[Tensor] = []
        for node in self.nodes:
            values.append(_evaluate(node, values, feeds, ref))
        if keep_all:
            return values
        return {name: values[i].expand(ref.shape[0], *self.nodes[i].shape) for name, i in self.outputs}

    def _feeds(self, inputs: Tensor | Mapping[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
        if isinstance(inputs, Tensor):
            if len(self.inputs) != 1:
                raise ValueError(f"graph has inputs {[n for n, _ in self.inputs]}: pass a dict")
            inputs = {self.inputs[0][0]: inputs}
        missing = {n for n, _ in self.inputs} - set(inputs)
        if missing:
            raise ValueError(f"missing graph inputs: {sorted(missing)}")
        feeds = {}
        for name, i in self.inputs:
            x = inputs[name]
            x = torch.as_tensor(x).to(dtype)
            if tuple(x.shape[1:]) != self.nodes[i].shape:
                raise ValueError(
                    f"input {name!r} needs shape (N, *{self.nodes[i].shape}), got {tuple(x.shape)}"
                )
            feeds[name] = x
        return feeds

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))
        return f"Graph({len(self.nodes)} nodes: {ops})"


def _evaluate(node: Node, values: list[Tensor], feeds: dict[str, Tensor], ref: Tensor) -> Tensor:
    if node.op == "input":
        return feeds[node.kwargs["name"]]
    if node.op == "const":
        value: Const = node.kwargs["value"]
        return value.like(ref).unsqueeze(0)
    args = [values[j] for j in node.inputs]
    return get_op(node.op).forward(*args, **node.kwargs)


def validate(graph: Graph) -> None:
    """Raise `GraphError` listing every broken invariant (see the module docstring)."""
    problems: list[str] = []
    seen: dict[tuple[Any, ...], int] = {}
    for i, node in enumerate(graph.nodes):
        problems += [f"node {i} ({node.op}): {p}" for p in _node_problems(graph, i, node)]
        if node.key in seen:
            problems.append(f"node {i} ({node.op}) duplicates node {seen[node.key]}")
        seen.setdefault(node.key, i)
    problems += _io_problems(graph)
    if problems:
        raise GraphError("invalid graph:\n  " + "\n  ".join(problems))


def _node_problems(graph: Graph, i: int, node: Node) -> list[str]:
    if node.op not in REGISTRY:
        return [f"unknown op {node.op!r}"]
    op = REGISTRY[node.op]
    if op.arity >= 0 and len(node.inputs) != op.arity:
        return [f"takes {op.arity} inputs, has {len(node.inputs)}"]
    if any(not (0 <= j < i) for j in node.inputs):
        return [f"inputs {node.inputs} are not all earlier nodes"]
    try:
        shape = tuple(op.shape(*(graph.nodes[j].shape for j in node.inputs), **node.kwargs))
    except (ValueError, TypeError, RuntimeError) as err:
        return [f"bad inputs or params: {err}"]
    if shape != node.shape:
        return [f"shape {node.shape} but its op gives {shape}"]
    return []


def _io_problems(graph: Graph) -> list[str]:
    problems = []
    input_nodes = {i for i, n in enumerate(graph.nodes) if n.op == "input"}
    declared = {i for _, i in graph.inputs}
    if declared != input_nodes:
        problems.append(f"graph inputs {sorted(declared)} differ from input nodes {sorted(input_nodes)}")
    names = [n for n, _ in graph.inputs]
    if len(set(names)) != len(names):
        problems.append(f"duplicate input names {names}")
    for name, i in graph.inputs:
        if i in input_nodes and graph.nodes[i].kwargs.get("name") != name:
            problems.append(f"input {name!r} points at node {i} named {graph.nodes[i].kwargs.get('name')!r}")
    out_names = [n for n, _ in graph.outputs]
    if len(set(out_names)) != len(out_names):
        problems.append(f"duplicate output names {out_names}")
    problems += [
        f"output {n!r} -> missing node {i}" for n, i in graph.outputs if not 0 <= i < len(graph.nodes)
    ]
    if not graph.outputs:
        problems.append("graph has no outputs")
    return problems

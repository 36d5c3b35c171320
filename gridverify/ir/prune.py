"""Pruning a graph to the neurons a specification reads.

A specification that reads a few outputs of a wide graph (one thermal residual of a 118-bus case: 1 of 186
branches) depends on a few neurons of most nodes, yet every bound, relaxation, split score and falsifier
step works on whole nodes. `prune` rebuilds the graph with only the neurons the rows can depend on: a
neuron of node j is kept when some kept neuron of a consumer reads it (a nonzero weight of a linear map, a
gathered index, a concatenated slice, the same position of an elementwise op). The pruned graph computes
the kept neurons of every node as the same function (a linear map drops only columns whose weights are
zero in its kept rows; float64 evaluations agree to the last bits of a sum's order), so bounds on it are
bounds on the original.

The input is kept whole (the box and every witness stay as they are). Pruning covers graphs of 1-D nodes
built from the ops below (the ACOPF graphs); for any other graph `prune` returns None and the caller keeps
the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gridverify.const import Const
from gridverify.ir.builder import GraphBuilder, Var, _ancestors
from gridverify.ir.graph import Graph, Node

UNARY = frozenset(
    {
        "relu", "leaky_relu", "abs", "sigmoid", "tanh", "sin", "cos", "exp", "log", "sqrt", "square",
        "reciprocal", "neg", "gelu", "power", "clip", "floor",
    }
)  # fmt: skip
"""Elementwise ops of one input whose params are scalars: neuron k reads neuron k."""
BINARY = frozenset({"add", "sub", "mul"})
"""Elementwise ops of two inputs (an input of one element broadcasts)."""
OTHER = frozenset({"input", "const", "linear", "gather", "concat", "scale"})


@dataclass(frozen=True)
class Pruned:
    """The pruned graph, its output node, the specification on the kept outputs, and where each original
    node's kept neurons are: ``kept[i]`` (flat indices into node i, sorted) at node ``at[i]`` of ``graph``
    (nodes that no row reads are absent)."""

    graph: Graph
    output: int
    spec: Tensor
    kept: dict[int, Tensor]
    at: dict[int, int]

    def intervals(
        self, base: tuple[tuple[Tensor, Tensor] | None, ...] | None
    ) -> tuple[tuple[Tensor, Tensor] | None, ...] | None:
        """``base`` (per node of the original graph) per node of the pruned graph: each kept node's interval
        at its kept neurons (two original nodes at one pruned node: the intersection)."""
        if base is None:
            return None
        out: list[tuple[Tensor, Tensor] | None] = [None] * len(self.graph.nodes)
        for i, new in self.at.items():
            iv = base[i] if i < len(base) else None
            if iv is None:
                continue
            k = self.kept[i].to(iv[0].device)
            lo = iv[0].reshape(iv[0].shape[0], -1)[:, k]
            hi = iv[1].reshape(iv[1].shape[0], -1)[:, k]
            have = out[new]
            if have is not None:
                lo, hi = torch.maximum(lo, have[0]), torch.minimum(hi, have[1])
            out[new] = (lo, hi)
        return tuple(out)


def prune(graph: Graph, output: int, spec: Tensor) -> Pruned | None:
    """``graph`` cut to what the rows of ``spec`` (m, numel(output)) read (see the module docstring); None
    when the graph has a node this module does not prune, or when pruning would keep every neuron."""
    needed = graph.ancestors(output)
    for i in needed:
        node = graph.nodes[i]
        if node.op not in UNARY | BINARY | OTHER or len(node.shape) != 1:
            return None
        if node.op in UNARY and any(_numel(v) > 1 for _, v in node.params):
            return None
        if node.op == "scale" and graph.nodes[node.inputs[0]].size != node.size:
            return None
        if node.op in BINARY and any(graph.nodes[j].size not in (1, node.size) for j in node.inputs):
            return None
    masks = _masks(graph, output, spec.reshape(spec.shape[0], -1).ne(0).any(0))
    if all(bool(masks[i].all()) for i in needed if graph.nodes[i].op != "input"):
        return None
    kept = {i: m.nonzero().squeeze(1) for i, m in masks.items() if bool(m.any())}
    b = GraphBuilder()
    vals: dict[int, Var] = {}
    for i in sorted(kept):
        vals[i] = _rebuild(b, graph, i, kept, vals)
    pruned = b.build({"pruned": vals[output]})
    return Pruned(
        pruned,
        pruned.output_ids["pruned"],
        spec.reshape(spec.shape[0], -1)[:, kept[output].to(spec.device)],
        kept,
        _built_ids(b, vals, vals[output].id),
    )


def _built_ids(b: GraphBuilder, vals: dict[int, Var], out: int) -> dict[int, int]:
    """Original node -> its id in ``b.build`` (which keeps the inputs and the output's ancestors, in
    order); nodes folded away are absent."""
    keep = _ancestors(b.nodes, out)
    keep |= {v.id for v in vals.values() if b.nodes[v.id].op == "input"}
    rank = {old: new for new, old in enumerate(sorted(keep))}
    return {i: rank[v.id] for i, v in vals.items() if v.id in rank}


def _masks(graph: Graph, output: int, read: Tensor) -> dict[int, Tensor]:
    """Per node the (numel,) mask of the neurons the kept outputs depend on (the input: all)."""
    masks: dict[int, Tensor] = {output: read.cpu()}
    for i in sorted(graph.ancestors(output), reverse=True):
        node = graph.nodes[i]
        if i not in masks or node.op in ("input", "const"):
            continue
        for j, need in zip(node.inputs, _reads(graph, node, masks[i])):
            masks[j] = need if j not in masks else masks[j] | need
    for i in graph.ancestors(output):
        if graph.nodes[i].op == "input":
            masks[i] = torch.ones(graph.nodes[i].size, dtype=torch.bool)
    return masks


def _reads(graph: Graph, node: Node, mask: Tensor) -> list[Tensor]:
    """Per input of ``node``: the mask of its neurons that the kept neurons ``mask`` of node read."""
    sizes = [graph.nodes[j].size for j in node.inputs]
    kw = node.kwargs
    if node.op in UNARY or node.op == "scale":
        return [mask.clone()]
    if node.op in BINARY:
        return [mask.clone() if n == mask.numel() else torch.ones(n, dtype=torch.bool) for n in sizes]
    if node.op == "linear":
        w = kw["weight"].tensor
        if w.is_sparse:
            w = w.to_dense()
        return [w[mask].ne(0).any(0)]
    if node.op == "gather":
        need = torch.zeros(sizes[0], dtype=torch.bool)
        need[kw["index"].tensor.reshape(-1)[mask]] = True
        return [need]
    if node.op == "concat":
        parts, start = [], 0
        for n in sizes:
            parts.append(mask[start : start + n].clone())
            start += n
        return parts
    raise ValueError(f"prune: no rule for {node.op!r}")  # excluded by `prune`


def _tensor(value: object) -> Tensor:
    return value.tensor if isinstance(value, Const) else torch.as_tensor(value)


def _numel(value: object) -> int:
    """Elements of a node parameter (1 for a number, a string or None)."""
    if isinstance(value, (Const, Tensor)):
        return int(_tensor(value).numel())
    return 1


def _select(b: GraphBuilder, j: int, want: Tensor, kept: dict[int, Tensor], vals: dict[int, Var]) -> Var:
    """Neurons ``want`` (original indices of node j, sorted) of node j's pruned value."""
    have = kept[j]
    if have.numel() == want.numel() and bool((have == want).all()):
        return vals[j]
    pos = torch.searchsorted(have, want)
    return b.gather(vals[j], pos)


def _rebuild(b: GraphBuilder, graph: Graph, i: int, kept: dict[int, Tensor], vals: dict[int, Var]) -> Var:
    node, k = graph.nodes[i], kept[i]
    kw = node.kwargs
    if node.op == "input":
        return b.input(kw["name"], kw["shape"])
    if node.op == "const":
        return b.const(kw["value"].tensor.reshape(-1)[k])
    if node.op in UNARY:
        return b.apply(node.op, _select(b, node.inputs[0], k, kept, vals), name=node.name, **kw)
    if node.op == "scale":
        factor = kw["factor"]
        if _numel(factor) > 1:
            factor = Const(_tensor(factor).reshape(-1)[k])
        return b.apply("scale", _select(b, node.inputs[0], k, kept, vals), name=node.name, factor=factor)
    if node.op in BINARY:
        args = []
        for j in node.inputs:
            whole = graph.nodes[j].size != node.size  # a broadcast input of one element
            args.append(_select(b, j, kept[j] if whole else k, kept, vals))
        return b.apply(node.op, *args, name=node.name, **kw)
    if node.op == "linear":
        j = node.inputs[0]
        bias = kw.get("bias")
        if isinstance(bias, Const):
            bias = Const(bias.tensor.reshape(-1)[k])
        if j not in kept:  # the kept rows' weights are all zero: the bias alone
            return b.const(
                bias.tensor if isinstance(bias, Const) else torch.zeros(k.numel(), dtype=torch.float64)
            )
        w = kw["weight"].tensor
        w = (w.to_dense() if w.is_sparse else w)[k][:, kept[j]]
        return b.apply("linear", vals[j], name=node.name, weight=Const(w), bias=bias)
    if node.op == "gather":
        index = kw["index"].tensor.reshape(-1)[k]
        return b.gather(vals[node.inputs[0]], torch.searchsorted(kept[node.inputs[0]], index))
    if node.op == "concat":
        parts, start = [], 0
        for j in node.inputs:
            n = graph.nodes[j].size
            want = k[(k >= start) & (k < start + n)] - start
            if want.numel():
                parts.append(_select(b, j, want, kept, vals))
            start += n
        return b.concat(parts, axis=0)
    raise ValueError(f"prune: no rule for {node.op!r}")

"""`compose`: a surrogate (loads -> dispatch) feeding the ACOPF constraint graph (dispatch, voltages and
loads -> constraints), as one `Graph` from the load box to every constraint value.

    load (2D,) ──> [surrogate graph] ──> pg, qg (G,), vm, va (N,) ──┐
       └──────────── pd = load[:D], qd = load[D:] ──────────────────┴─> [compile_acopf graph] ──> outputs

The composed graph has one input ``"load"`` of shape (2D,) (``concat(pd_pu, qd_pu)``, per unit) and the
outputs of ``compile_acopf(problem)``, same names, same order, same rows. The surrogate may be any torch
module that `gridverify.ir.from_torch` translates, taking (B, n_in) and giving (B, n_out), with a `Layout`
(its ``layout`` attribute or the ``layout`` argument) saying which entries are which. A user's model:

    module = nn.Sequential(...)                       # (B, 2D) -> (B, 2G + 2N), float64, eval mode
    module.load_state_dict(torch.load("weights.pt"))
    layout = Layout((("qd_pu", D), ("pd_pu", D)), (("va_rad", N), ("vm_pu", N), ("pg_pu", G), ("qg_pu", G)))
    graph = compose(problem, module, layout)          # or set module.layout = layout
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from torch import nn

from gridverify.grid.acopf import AcopfProblem, compile_acopf
from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.from_torch import from_torch
from gridverify.ir.graph import Graph
from gridverify.surrogate.model import Layout

__all__ = ["compose", "graft", "layout_of", "surrogate_graph"]


def layout_of(surrogate: nn.Module, layout: Layout | None = None) -> Layout:
    """``layout`` if given, else the surrogate's own ``layout`` attribute."""
    found = layout if layout is not None else getattr(surrogate, "layout", None)
    if not isinstance(found, Layout):
        raise ValueError(
            f"{type(surrogate).__name__} has no `layout`: pass compose(..., layout=Layout(...)) saying which "
            "input entries are pd_pu / qd_pu and which outputs are pg_pu, qg_pu, vm_pu, va_rad"
        )
    return found


def surrogate_graph(surrogate: nn.Module, layout: Layout) -> Graph:
    """The surrogate as a graph: input ``"load"`` (n_in,), output ``"dispatch"`` (n_out,)."""
    if surrogate.training:
        raise ValueError("put the surrogate in eval mode first (surrogate.eval())")
    graph = from_torch(surrogate, {_first_argument(surrogate): (layout.n_inputs,)}, output_names=["dispatch"])
    shape = graph.nodes[graph.output_ids["dispatch"]].shape
    if shape != (layout.n_outputs,):
        raise ValueError(f"surrogate output has shape {shape}, the layout needs ({layout.n_outputs},)")
    return graph


def _first_argument(module: nn.Module) -> str:
    return next(iter(inspect.signature(module.forward).parameters))


def graft(builder: GraphBuilder, graph: Graph, feeds: Mapping[str, Var]) -> dict[str, Var]:
    """Copy ``graph``'s nodes into ``builder``, its inputs replaced by ``feeds`` (same shapes); returns its
    outputs as vars of ``builder``. Nodes are interned, so shared subexpressions stay shared."""
    missing = sorted({name for name, _ in graph.inputs} - set(feeds))
    if missing:
        raise ValueError(f"no feed for graph inputs {missing}")
    values: list[Var] = []
    for node in graph.nodes:
        kw = node.kwargs
        if node.op == "input":
            fed = feeds[kw["name"]]
            if fed.shape != node.shape:
                raise ValueError(f"input {kw['name']!r} needs shape {node.shape}, fed {fed.shape}")
            values.append(fed)
        elif node.op == "const":
            values.append(builder.const(kw["value"]))
        else:
            values.append(builder.apply(node.op, *(values[j] for j in node.inputs), name=node.name, **kw))
    return {name: values[i] for name, i in graph.outputs}


def compose(problem: AcopfProblem, surrogate: nn.Module, layout: Layout | None = None) -> Graph:
    """One graph: input ``"load"`` (2D,) -> the outputs of ``compile_acopf(problem)`` (module docstring)."""
    lay = layout_of(surrogate, layout)
    lay.check(problem.data)
    b = GraphBuilder()
    load = b.input("load", (lay.n_inputs,))
    net = surrogate_graph(surrogate, lay)
    fed = b.gather(load, lay.input_order())  # the identity (no node) in the standard order
    dispatch = graft(b, net, {net.inputs[0][0]: fed})["dispatch"]
    d = lay.n_inputs // 2
    feeds = {name: b.index(dispatch, s) for name, s in lay.output_slices.items()}
    feeds |= {"pd_pu": b.index(load, slice(0, d)), "qd_pu": b.index(load, slice(d, 2 * d))}
    outputs = graft(b, compile_acopf(problem), feeds)
    return b.build(outputs)

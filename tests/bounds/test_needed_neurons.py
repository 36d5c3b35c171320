"""Sparse intermediate bounds: CROWN bounds only the neurons a specification can depend on.

The final bound must be exactly what bounding every neuron gives (the others never enter it), and the
dependency masks must follow gathers and linear maps on a graph small enough to read."""

import pytest
import torch

from gridverify.bounds import alpha_crown, crown
from gridverify.bounds.core import make_plan, spec_matrix
from gridverify.bounds.crown import final_bounds, needed_neurons, node_relaxer, propagate, resolve
from gridverify.ir import GraphBuilder
from tests.bounds.random_graphs import random_box, random_graph

F64 = torch.float64


def test_masks_follow_gathers_and_linear_maps() -> None:
    b = GraphBuilder()
    x = b.input("x", (3,))
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0], [1.0, 1.0, 0.0]], dtype=F64)
    h = b.linear(x, w)  # (4,)
    s = b.sin(h)
    z = b.linear(s, torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]], dtype=F64))  # (2,)
    g = b.build({"y": b.sigmoid(z) * b.cos(h[3])})
    graph, _, out = resolve(g, (-torch.ones(1, 3, dtype=F64), torch.ones(1, 3, dtype=F64)), None)
    plan = make_plan(graph, out)
    c = torch.tensor([[[1.0, 0.0]]], dtype=F64)  # only y[0] = sigmoid(s[0]) * cos(h[3])
    masks = needed_neurons(graph, plan, out, c)
    by_shape = {graph.nodes[i].shape: m.tolist() for i, m in masks.items()}
    assert by_shape[(4,)] == [True, False, False, True]  # h[0] (through s[0], z[0]) and h[3]
    assert by_shape[(2,)] == [True, False]  # z[0]; z[1] feeds only y[1]


@pytest.mark.parametrize("seed", range(4))
def test_masked_final_bound_equals_full_one(seed: int) -> None:
    graph = random_graph(300 + seed, depth=5)
    box = random_box(seed)
    graph, ibox, out = resolve(graph, box, "y")
    plan = make_plan(graph, out)
    relaxer = node_relaxer(graph)
    n_out = graph.nodes[out].size
    c = spec_matrix(graph, out, torch.eye(n_out, dtype=F64)[:1], box[0])
    masks = needed_neurons(graph, plan, out, c)
    full, _ = propagate(graph, ibox, plan, relaxer)
    sparse, _ = propagate(graph, ibox, plan, node_relaxer(graph), masks=masks)
    lo_f, hi_f, _ = final_bounds(graph, ibox, out, c, full, relaxer)
    lo_s, hi_s, _ = final_bounds(graph, ibox, out, c, sparse, node_relaxer(graph))
    assert torch.allclose(lo_f, lo_s, rtol=0, atol=1e-12) and torch.allclose(hi_f, hi_s, rtol=0, atol=1e-12)
    for i, m in masks.items():  # masked neurons get the full CROWN interval, the rest at least IBP
        for k in (0, 1):
            s, f = sparse[i][k].reshape(-1, m.numel()), full[i][k].reshape(-1, m.numel())
            assert torch.allclose(s[:, m], f[:, m], rtol=0, atol=1e-12)


def test_crown_and_alpha_on_one_row_match_the_full_spec_row() -> None:
    graph = random_graph(7, depth=4)
    box = random_box(1)
    n_out = graph.nodes[graph.output_ids["y"]].size
    eye = torch.eye(n_out, dtype=F64)
    one, every = crown(graph, box, spec=eye[:1]), crown(graph, box, spec=eye)
    assert torch.allclose(one.upper[:, 0], every.upper[:, 0], rtol=0, atol=1e-12)
    assert bool((alpha_crown(graph, box, spec=eye[:1]).upper[:, 0] <= one.upper[:, 0] + 1e-12).all())


def test_masks_see_through_cancelling_linear_maps() -> None:
    """A softmax's pairwise differences ``x_j - x_i`` (each input once with +1 and once with -1) feed exps
    of slope 1 in the dependency walk: summing signed coefficients cancelled to zero and left every input
    out of the mask (its IBP interval then loosened everything above)."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    h = b.linear(x, torch.tensor([[1.0, 1.0], [1.0, -1.0], [2.0, 0.0]], dtype=F64))
    d = b.linear(b.apply("exp", h), torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]], dtype=F64))
    g = b.build({"y": b.sum(b.apply("exp", d))})
    graph, _, out = resolve(g, (-torch.ones(1, 2, dtype=F64), torch.ones(1, 2, dtype=F64)), None)
    plan = make_plan(graph, out)
    masks = needed_neurons(graph, plan, out, torch.ones(1, 1, dtype=F64))
    # h[2] feeds nothing the output reads; h[0], h[1] feed it through the differences
    by_shape = {graph.nodes[i].shape: m.tolist() for i, m in masks.items()}
    assert by_shape == {(3,): [True, True, False], (2,): [True, True]}

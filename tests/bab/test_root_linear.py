"""BBPS's root linear bounds: only the neurons a specification needs are bounded linearly, every other neuron
gets its interval as constant bounds; all of them hold at sampled points of the box."""

import torch

from gridverify.bab.domains import Problem
from gridverify.bab.search import _root_linear
from gridverify.bounds import crown
from gridverify.bounds.crown import needed_neurons
from gridverify.ir import Graph, GraphBuilder

F64 = torch.float64


def _two_branches() -> Graph:
    """x (4,) -> relu layer (8,) -> (8,) values; y = sin of them, times a sigmoid: each output entry reads
    its own neurons only, as a branch's thermal row reads its own branch's angle."""
    gen = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    x = b.input("x", (4,))
    h = b.relu(
        b.linear(x, torch.randn(8, 4, generator=gen, dtype=F64), torch.randn(8, generator=gen, dtype=F64))
    )
    z = b.linear(h, torch.randn(6, 8, generator=gen, dtype=F64))
    return b.build({"y": b.sin(z) * b.sigmoid(z)})


def test_root_linear_bounds_needed_neurons_linearly_and_others_by_their_interval() -> None:
    graph = _two_branches()
    box = (torch.full((1, 4), -1.0, dtype=F64), torch.full((1, 4), 1.0, dtype=F64))
    problem = Problem.make(graph, box)
    spec = torch.zeros(1, 6, dtype=F64)
    spec[0, 2] = 1.0  # one output entry
    intervals = crown(problem.graph, box, problem.output, spec).intervals
    root = _root_linear(problem, intervals, spec)
    masks = needed_neurons(problem.graph, problem.plan, problem.output, spec.reshape(1, 1, 6))
    x = box[0] + (box[1] - box[0]) * torch.rand(
        4000, 4, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    values = problem.graph.forward(x, keep_all=True)
    assert root, "no node bounded"
    partial = 0
    for i, (w_lo, b_lo, w_hi, b_hi) in root.items():
        v = values[i].reshape(x.shape[0], -1)
        lo = (x @ w_lo.reshape(-1, 4).T) + b_lo.reshape(1, -1)
        hi = (x @ w_hi.reshape(-1, 4).T) + b_hi.reshape(1, -1)
        assert bool((lo <= v + 1e-9).all() and (v <= hi + 1e-9).all()), i
        if i in masks and not bool(masks[i].all()):
            partial += 1
            other = ~masks[i]
            assert bool((w_lo.reshape(-1, 4)[other] == 0).all() and (w_hi.reshape(-1, 4)[other] == 0).all())
            assert torch.equal(b_lo.reshape(-1)[other], intervals[i][0].reshape(-1)[other])  # type: ignore[index]
    assert partial > 0  # the spec needs part of some node only

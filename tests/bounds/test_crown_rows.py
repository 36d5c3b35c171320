"""CROWN bounds many specification rows in blocks of `ROWS` per backward pass: the same bounds and linear
forms as one pass over all rows."""

import sys

import torch

from gridverify.bounds import crown
from gridverify.ir import GraphBuilder

F64 = torch.float64


def test_rows_in_blocks_give_the_one_pass_bounds(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder()
    x = b.input("x", (5,))
    h = b.sigmoid(b.linear(x, torch.randn(16, 5, generator=gen, dtype=F64), torch.zeros(16, dtype=F64)))
    y = b.linear(h, torch.randn(12, 16, generator=gen, dtype=F64), torch.zeros(12, dtype=F64))
    g = b.build({"y": b.sin(y) * y})
    box = (torch.full((1, 5), -1.0, dtype=F64), torch.full((1, 5), 1.0, dtype=F64))
    spec = torch.randn(300, 12, generator=gen, dtype=F64)
    whole = crown(g, box, "y", spec, keep_linear=True)
    monkeypatch.setattr(sys.modules["gridverify.bounds.crown"], "ROWS", 64)
    blocks = crown(g, box, "y", spec, keep_linear=True)
    assert torch.allclose(whole.lower, blocks.lower, rtol=1e-12, atol=1e-12)
    assert torch.allclose(whole.upper, blocks.upper, rtol=1e-12, atol=1e-12)
    assert whole.linear is not None and blocks.linear is not None
    assert torch.allclose(whole.linear.lower["x"], blocks.linear.lower["x"], rtol=1e-12, atol=1e-12)
    assert torch.allclose(whole.linear.upper_bias, blocks.linear.upper_bias, rtol=1e-12, atol=1e-12)
    assert blocks.linear.lower["x"].shape == (1, 300, 5)


def test_intermediate_neurons_in_chunks_give_the_one_pass_intervals(monkeypatch) -> None:
    """Intermediate nodes' neurons are bounded in chunks of rows (`INTERMEDIATE_ELEMENTS`): the same
    intervals, bounds and (with ``keep_linear``) linear forms as one pass, masked or not, batched boxes."""
    from gridverify.bab.search import propagate
    from gridverify.bounds.core import make_plan
    from gridverify.bounds.crown import node_relaxer, resolve
    from tests.bounds.random_graphs import random_box, random_graph

    crown_module = sys.modules["gridverify.bounds.crown"]
    for seed in range(3):
        graph, box = random_graph(40 + seed, depth=5), random_box(seed)
        whole = crown(graph, box, "y")
        lowered, ibox, out = resolve(graph, box, "y")
        plan = make_plan(lowered, out)
        _, lin_whole = propagate(lowered, ibox, plan, node_relaxer(lowered), keep_linear=True)
        monkeypatch.setattr(crown_module, "INTERMEDIATE_ELEMENTS", 7)
        chunks = crown(graph, box, "y")
        _, lin_chunks = propagate(lowered, ibox, plan, node_relaxer(lowered), keep_linear=True)
        monkeypatch.undo()
        for a, b in zip(whole.intervals, chunks.intervals):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert torch.allclose(a[0], b[0], rtol=1e-12, atol=1e-12)
                assert torch.allclose(a[1], b[1], rtol=1e-12, atol=1e-12)
        assert torch.allclose(whole.upper, chunks.upper, rtol=1e-12, atol=1e-12)
        assert lin_whole.keys() == lin_chunks.keys() and lin_whole
        for i, (found, bias) in lin_whole.items():
            assert torch.allclose(bias, lin_chunks[i][1], rtol=1e-12, atol=1e-12)
            for j, a in found.items():
                assert torch.allclose(a, lin_chunks[i][0][j], rtol=1e-12, atol=1e-12)

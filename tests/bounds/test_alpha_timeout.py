"""alpha-CROWN's time limit: it stops early with bounds that are still sound and no looser than CROWN's; with
no steps it is CROWN."""

from __future__ import annotations

import time

import torch

from gridverify.bounds import AlphaConfig, alpha_crown, crown
from gridverify.ir import GraphBuilder


def test_timeout_stops_early_and_stays_sound():
    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder()
    x = b.input("x", (8,))
    h = x
    for _ in range(3):
        h = b.sigmoid(b.linear(h, torch.randn(32, h.shape[0], generator=gen, dtype=torch.float64)))
    g = b.build({"y": b.linear(h, torch.randn(4, 32, generator=gen, dtype=torch.float64))})
    lo = -torch.ones(1, 8, dtype=torch.float64)
    box = (lo, -lo)
    ref = crown(g, box)
    start = time.perf_counter()
    r = alpha_crown(
        g, box, config=AlphaConfig(steps=100_000, patience=100_000, min_improvement=-1.0, timeout_s=0.5)
    )
    assert time.perf_counter() - start < 5.0  # without the limit: 100000 steps
    assert bool((r.upper <= ref.upper + 1e-12).all()) and bool((r.lower >= ref.lower - 1e-12).all())
    xs = lo + 2 * torch.rand(2000, 8, generator=gen, dtype=torch.float64)
    ys = g.forward(xs)["y"]
    assert bool((ys <= r.upper).all()) and bool((ys >= r.lower).all())


def test_fitting_shares_intermediate_alphas_only_when_they_would_not_fit() -> None:
    from gridverify.bounds.alpha import fitting
    from tests.bounds.random_graphs import random_graph

    graph = random_graph(5, depth=5)
    n_out = graph.nodes[graph.output_ids["y"]].size
    spec = torch.eye(n_out, dtype=torch.float64)[:1]
    config = AlphaConfig(steps=3)
    assert fitting(graph, "y", spec, config, memory_gb=64.0) == config
    small = fitting(graph, "y", spec, config, memory_gb=1e-9)
    assert small.shared_intermediate and small.steps == 3
    off = AlphaConfig(optimise_intermediate=False)
    assert fitting(graph, "y", spec, off, memory_gb=1e-9) == off
    none = AlphaConfig(steps=0)  # no optimisation: nothing to share
    assert fitting(graph, "y", spec, none, memory_gb=1e-9) == none


def test_no_steps_is_crown() -> None:
    """``steps=0`` (verify's decide searches, `gridverify.verify.run.ROOT`) returns CROWN's bounds and
    intervals themselves, without the optimisation's setup."""
    from tests.bounds.random_graphs import random_graph

    graph = random_graph(7, depth=4)
    lo = -torch.ones(1, graph.nodes[graph.input_ids["x"]].size, dtype=torch.float64)
    ref, r = crown(graph, (lo, -lo), "y"), alpha_crown(graph, (lo, -lo), "y", config=AlphaConfig(steps=0))
    assert r.method == ref.method == "crown"
    assert torch.equal(r.upper, ref.upper) and torch.equal(r.lower, ref.lower)
    assert all(
        (a is None and b is None) or (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))
        for a, b in zip(r.intervals, ref.intervals)
    )
    stepped = alpha_crown(graph, (lo, -lo), "y", config=AlphaConfig(steps=5))
    assert bool((stepped.upper <= ref.upper + 1e-12).all())

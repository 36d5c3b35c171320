"""Leaky relu in branch and bound: its inputs split at the kink (0) while they straddle it, and a search
over ``y = -(leaky(s) + leaky(-s)) = -0.9 |s|``, ``s = x1 + x2``, proves ``y <= 0.2`` (true maximum 0),
which the root bound (0.44: IBP through the relaxations) does not."""

from __future__ import annotations

import torch

from gridverify.bab import SearchConfig, Verdict, maximise
from gridverify.bab.branching import split_point
from gridverify.bab.domains import Problem
from gridverify.bounds import crown
from gridverify.ir import Graph, GraphBuilder

DTYPE = torch.float64


def _graph() -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2,))
    s = b.linear(x, torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=DTYPE))
    h = b.apply("leaky_relu", s, negative_slope=0.1)
    return b.build({"y": b.linear(h, torch.tensor([[-1.0, -1.0]], dtype=DTYPE))})


BOX = (torch.full((1, 2), -1.0, dtype=DTYPE), torch.full((1, 2), 1.2, dtype=DTYPE))


def test_splits_at_the_kink() -> None:
    problem = Problem.make(_graph(), BOX)
    (z,) = problem.split_nodes
    lower, upper = torch.tensor([-2.0, 0.5]), torch.tensor([1.0, 3.0])
    assert split_point(problem, z, lower, upper).tolist() == [0.0, 1.75]


def test_search_beats_the_root_bound() -> None:
    graph = _graph()
    spec = torch.ones((1, 1), dtype=DTYPE)
    assert float(crown(graph, BOX, spec=spec).upper) >= 0.4
    (res,) = maximise(graph, BOX, spec, threshold=0.2, config=SearchConfig(timeout_s=20.0))
    assert res.verdict is Verdict.VERIFIED and res.upper <= 0.2

"""Filtering: BBPS's top candidates across split nodes; split points of product factors."""

import torch

from gridverify.bab.branching import split_point
from gridverify.bab.domains import Problem
from gridverify.bab.filtering import top_candidates
from gridverify.ir import GraphBuilder


def test_top_candidates_span_nodes_in_score_order_and_mask_unsplittable() -> None:
    inf = float("inf")
    scores = {
        3: torch.tensor([[0.1, 0.9, -inf], [0.0, -inf, -inf]]),
        7: torch.tensor([[0.5, 0.2], [-inf, 0.3]]),
    }
    node, index, ok = top_candidates(scores, 4)
    assert node.tolist()[0] == [3, 7, 7, 3] and index.tolist()[0] == [1, 0, 1, 0]
    assert node.tolist()[1][:2] == [7, 3] and index.tolist()[1][:2] == [1, 0]
    assert ok.tolist() == [[True] * 4, [True, True, False, False]]


def test_top_candidates_never_asks_for_more_than_exist() -> None:
    node, index, ok = top_candidates({2: torch.tensor([[1.0, 2.0]])}, 8)
    assert node.shape == (1, 2) and index.tolist() == [[1, 0]] and bool(ok.all())


def _mccormick_gap(xl: float, xu: float, yl: float, yu: float, n: int = 101) -> float:
    """Volume between McCormick's upper and lower planes of x*y over the box (mean over a grid)."""
    x, y = torch.meshgrid(
        torch.linspace(xl, xu, n, dtype=torch.float64),
        torch.linspace(yl, yu, n, dtype=torch.float64),
        indexing="ij",
    )
    up = torch.minimum(yl * x + xu * y - xu * yl, yu * x + xl * y - xl * yu)
    lo = torch.maximum(yl * x + xl * y - xl * yl, yu * x + xu * y - xu * yu)
    return float((up - lo).mean()) * (xu - xl) * (yu - yl)


def test_product_factors_split_at_the_area_optimal_midpoint() -> None:
    """The claim behind `split_point` for products: the children's McCormick gap is smallest at the
    midpoint (here below splitting at 0 or at any other of 19 points), and split_point returns it."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build({"y": b.linear(x, torch.eye(2, dtype=torch.float64)) * x[1:2]})
    lo, hi = torch.tensor([[-1.0, 0.5]], dtype=torch.float64), torch.tensor([[3.0, 2.0]], dtype=torch.float64)
    problem = Problem.make(g, (lo, hi))
    (z,) = [z for z in problem.split_nodes if problem.graph.nodes[z].shape == (2,)]
    assert split_point(problem, z, lo, hi, tables=True).tolist() == [[1.0, 1.25]]
    assert split_point(problem, z, lo, hi, tables=False).tolist() == [[0.0, 1.25]]
    points = [round(-1.0 + 0.2 * k, 6) for k in range(1, 20)]
    gaps = {p: _mccormick_gap(-1.0, p, 0.5, 2.0) + _mccormick_gap(p, 3.0, 0.5, 2.0) for p in points}
    assert min(gaps, key=gaps.get) == 1.0 and gaps[1.0] < 0.9 * gaps[0.0]

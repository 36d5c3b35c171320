"""Filtering: BBPS's top candidates across split nodes, and the choice among them by a true bound."""

import torch

from gridverify.bab.filtering import top_candidates


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

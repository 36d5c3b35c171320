"""Folding fixed input dimensions into the first linear maps (`fold_fixed_inputs`): the folded graph is the
same function, its new bias is the exact sum rounded once, and a search over a box with fixed dimensions
gives witnesses in the original input's shape and sound bounds."""

from fractions import Fraction

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridverify.bab import SearchConfig, maximise
from gridverify.bab.domains import Problem, fold_fixed_inputs
from gridverify.ir import GraphBuilder
from tests.bounds.random_graphs import random_graph

F64 = torch.float64


def _box(seed: int, n_in: int, n_free: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lower = torch.randn(1, n_in, generator=gen, dtype=F64) * 3
    upper = lower.clone()
    free = torch.randperm(n_in, generator=gen)[:n_free]
    upper[0, free] += torch.rand(n_free, generator=gen, dtype=F64) * 0.5
    return lower, upper


@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(0, 10_000))
def test_folded_graph_is_the_same_function(seed: int) -> None:
    """Sampled points of the box: the folded graph at the free coordinates equals the original graph (to
    the last bits of a sum's order), and widen(narrow(x)) is x."""
    graph = random_graph(seed, depth=3, n_in=8)
    box = _box(seed, 8, 2)
    folded = fold_fixed_inputs(Problem.make(graph, box))
    assert folded is not None
    assert folded.problem.lower.shape == (1, 2)
    gen = torch.Generator().manual_seed(seed)
    x = box[0] + (box[1] - box[0]) * torch.rand(64, 8, generator=gen, dtype=F64)
    assert torch.equal(folded.widen(folded.narrow(x)), x)
    name = graph.outputs[0][0]
    y = graph.forward(x)[name]
    y_folded = folded.problem.graph.forward(folded.narrow(x))[name]
    assert torch.allclose(y, y_folded, rtol=1e-12, atol=1e-12)


def test_folded_bias_is_the_exact_sum_rounded_once() -> None:
    """``b + W[:, F] v`` with terms that cancel: the folded bias equals the exact rational sum rounded to
    float64 (a plain float64 dot product loses the small terms)."""
    w = torch.tensor([[1e17, 1.0, -1e17, 0.5], [3.0, 1e-17, 1.0 / 3.0, 2.0]], dtype=F64)
    bias = torch.tensor([0.25, -1.0], dtype=F64)
    b = GraphBuilder()
    x = b.input("x", (4,))
    graph = b.build({"y": b.relu(b.linear(x, w, bias))})
    lower = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=F64)
    upper = lower.clone()
    upper[0, 3] = 1.0
    folded = fold_fixed_inputs(Problem.make(graph, (lower, upper)))
    assert folded is not None
    node = next(n for n in folded.problem.graph.nodes if n.op == "linear")
    got = node.kwargs["bias"].tensor.tolist()
    for k in range(2):
        exact = Fraction(bias[k].item()) + sum(Fraction(w[k, j].item()) for j in range(3))
        assert got[k] == float(exact)
    assert node.kwargs["weight"].tensor.tolist() == [[0.5], [2.0]]


def test_no_fold_when_few_inputs_are_fixed() -> None:
    graph = random_graph(3, depth=2, n_in=4)
    lower = torch.zeros(1, 4, dtype=F64)
    assert fold_fixed_inputs(Problem.make(graph, (lower, lower + 1.0))) is None


@settings(max_examples=6, deadline=None, database=None)
@given(seed=st.integers(0, 10_000))
def test_search_over_fixed_dimensions_is_sound(seed: int) -> None:
    """maximise over a box with 6 of 8 dimensions fixed: the witness has the original shape, lies in the
    box and reaches the reported worst value; no sampled value exceeds the certified upper bound."""
    graph = random_graph(seed, depth=3, n_in=8)
    box = _box(seed, 8, 2)
    spec = torch.randn(2, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    results = maximise(graph, box, spec, config=SearchConfig(timeout_s=2.0))
    gen = torch.Generator().manual_seed(seed + 1)
    x = box[0] + (box[1] - box[0]) * torch.rand(500, 8, generator=gen, dtype=F64)
    values = graph.forward(x)[graph.outputs[0][0]] @ spec.T
    for k, r in enumerate(results):
        assert r.witness.shape == (8,)
        assert bool(((r.witness >= box[0][0]) & (r.witness <= box[1][0])).all())
        reached = float(graph.forward(r.witness.reshape(1, 8))[graph.outputs[0][0]][0] @ spec[k])
        assert abs(reached - r.worst) <= 1e-9 * (1 + abs(r.worst))
        assert float(values[:, k].max()) <= r.upper + 1e-9 * (1 + abs(r.upper))

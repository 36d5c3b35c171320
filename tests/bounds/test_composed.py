"""A linear node with many more neurons than its input (a softmax's pairwise differences) is bounded through
its input's CROWN lines (`gridverify.bounds.crown._composed`): exact where everything below the input is
linear, never tighter than a backward pass from each neuron, and sound on sampled points over degenerate,
narrow and very wide boxes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridverify.bounds import crown
from gridverify.ir import GraphBuilder
from gridverify.ir.builder import lower_fused

F64 = torch.float64
CROWN = sys.modules["gridverify.bounds.crown"]


def _differences(k: int) -> torch.Tensor:
    """(k (k - 1), k): rows e_j - e_i, as `gridverify.ir.onnx_ops.softmax_last` builds them."""
    pairs = [(i, j) for i in range(k) for j in range(k) if j != i]
    d = np.zeros((len(pairs), k))
    for row, (i, j) in enumerate(pairs):
        d[row, j], d[row, i] = 1.0, -1.0
    return torch.tensor(d)


def _graph(seed: int, hidden: str | None, k: int = 6):
    """x (4) -> [linear, ``hidden``] -> linear -> scores p (k) -> differences (k (k - 1)) -> exp -> sum."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    x = b.input("x", (4,))
    h = b.linear(x, torch.randn(8, 4, generator=gen, dtype=F64), torch.randn(8, generator=gen, dtype=F64))
    if hidden is not None:
        h = b.apply(hidden, h)
    p = b.linear(h, torch.randn(k, 8, generator=gen, dtype=F64), torch.zeros(k, dtype=F64))
    d = b.linear(p, _differences(k))
    g = b.build({"y": b.sum(b.apply("exp", d), axes=(-1,))})
    lowered = lower_fused(g)
    at = next(j for j, n in enumerate(lowered.nodes) if n.op == "linear" and n.shape == (k * (k - 1),))
    return g, at


def _bounded(g, box, **settings: int) -> tuple[list, list[int]]:
    """CROWN's intervals of ``g`` with the module's ``settings`` (COMPOSE_RATIO=..., ...) patched, and the
    nodes whose bounds were composed."""
    calls: list[int] = []
    real = CROWN._composed

    def spy(graph, i, source, spec, through):  # type: ignore[no-untyped-def]
        calls.append(i)
        return real(graph, i, source, spec, through)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setattr(CROWN, name, value)
        patch.setattr(CROWN, "_composed", spy)
        intervals = crown(g, box, "y").intervals
    return intervals, calls


def _intervals(g, box, at: int, ratio: int, elements: int = 2**24) -> tuple[torch.Tensor, torch.Tensor]:
    intervals, calls = _bounded(g, box, COMPOSE_RATIO=ratio, INTERMEDIATE_ELEMENTS=elements)
    iv = intervals[at]
    assert iv is not None
    fits = 4 * elements >= 2 * 6 * 8  # the scores' lines: one pass over their 6 neurons, 8 wide below
    assert (at in calls) == (ratio <= 5 and fits), "30 differences of 6 scores are composed from ratio 5 down"
    return iv


def test_composed_bounds_are_exact_when_the_input_is_linear() -> None:
    g, at = _graph(0, None)
    box = (torch.full((1, 4), -1.0, dtype=F64), torch.full((1, 4), 2.0, dtype=F64))
    composed = _intervals(g, box, at, 2)
    direct = _intervals(g, box, at, 10**9)
    assert torch.allclose(composed[0], direct[0], rtol=1e-12, atol=1e-12)
    assert torch.allclose(composed[1], direct[1], rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    hidden=st.sampled_from(["relu", "sigmoid", "tanh", "sin"]),
    centre=st.floats(-2.0, 2.0),
    width=st.sampled_from([0.0, 1e-6, 0.1, 1.0, 50.0]),
)
def test_composed_bounds_are_sound_and_never_tighter_than_direct(
    seed: int, hidden: str, centre: float, width: float
) -> None:
    g, at = _graph(seed, hidden)
    gen = torch.Generator().manual_seed(seed)
    mid = centre + torch.randn(1, 4, generator=gen, dtype=F64)
    box = (mid - width / 2, mid + width / 2)
    lo, hi = _intervals(g, box, at, 2)
    direct_lo, direct_hi = _intervals(g, box, at, 10**9)
    scale = 1e-9 * (1.0 + direct_lo.abs() + direct_hi.abs())
    assert bool((lo <= direct_lo + scale).all()) and bool((hi >= direct_hi - scale).all())
    # the differences at sampled points and the box's corners
    x = box[0] + (box[1] - box[0]) * torch.rand(4000, 4, generator=gen, dtype=F64)
    corners = torch.tensor(np.array(np.meshgrid(*[[0.0, 1.0]] * 4)).reshape(4, -1).T)
    x = torch.cat([x, box[0] + (box[1] - box[0]) * corners])
    node = lower_fused(g).forward(x, keep_all=True)[at]
    # the back-substitution's sums round to nearest (`gridverify.bounds.crown`), as in test_whole_graph
    slack = 1e-9 * (1.0 + node.abs())
    assert bool((node >= lo - slack).all()) and bool((node <= hi + slack).all())


def test_dense_maps_are_not_composed() -> None:
    """A map whose neurons each read every input neuron (a layer, not differences) keeps the direct pass,
    whatever the ratio: composing it loosened case300's screen on 2736 of 3722 rows."""
    gen = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    x = b.input("x", (4,))
    h = b.apply("relu", b.linear(x, torch.randn(8, 4, generator=gen, dtype=F64), torch.zeros(8, dtype=F64)))
    p = b.linear(h, torch.randn(6, 8, generator=gen, dtype=F64), torch.zeros(6, dtype=F64))
    wide = b.linear(p, torch.randn(60, 6, generator=gen, dtype=F64), torch.zeros(60, dtype=F64))
    g = b.build({"y": b.sum(b.apply("exp", wide), axes=(-1,))})
    box = (torch.full((1, 4), -1.0, dtype=F64), torch.full((1, 4), 1.0, dtype=F64))
    _, calls = _bounded(g, box, COMPOSE_RATIO=2)
    assert calls == []


def test_inputs_whose_lines_do_not_fit_are_not_composed() -> None:
    """The input's lines are one pass over all its neurons: where that pass would exceed 4x
    `INTERMEDIATE_ELEMENTS`, the node keeps the direct pass in chunks (the same intervals)."""
    g, at = _graph(1, "relu")
    box = (torch.full((1, 4), -1.0, dtype=F64), torch.full((1, 4), 1.0, dtype=F64))
    chunked = _intervals(g, box, at, 2, elements=7)
    direct = _intervals(g, box, at, 10**9)
    assert torch.allclose(chunked[0], direct[0], rtol=1e-12, atol=1e-12)
    assert torch.allclose(chunked[1], direct[1], rtol=1e-12, atol=1e-12)


def test_sparse_weights_compose_exactly_over_a_linear_input() -> None:
    """24 scores, 552 differences (2 of 48 weights per row nonzero: the sparse product), composed at the
    default ratio; exact where the scores are linear in the input."""
    g, at = _graph(2, None, k=24)
    box = (torch.full((1, 4), -0.5, dtype=F64), torch.full((1, 4), 1.5, dtype=F64))
    intervals, calls = _bounded(g, box)
    composed = intervals[at]
    direct = _intervals(g, box, at, 10**9)
    assert calls == [at]
    assert composed is not None
    assert torch.allclose(composed[0], direct[0], rtol=1e-12, atol=1e-12)
    assert torch.allclose(composed[1], direct[1], rtol=1e-12, atol=1e-12)

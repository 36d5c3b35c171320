"""`prune`: the graph cut to the neurons a specification reads computes the same values, gives sound
bounds, and `maximise` on it decides as on the whole graph."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridverify.bab.domains import Problem
from gridverify.bounds import crown
from gridverify.const import Const
from gridverify.ir import Graph, GraphBuilder
from gridverify.ir.prune import prune

F64 = torch.float64


def _every_rule(seed: int) -> Graph:
    """1-D nodes through each rule: linear maps with zero columns, gathers, concat, a vector scale, a
    broadcast constant, products and the elementwise ops of the ACOPF graphs."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    x = b.input("x", (5,))
    w = torch.randn(8, 5, generator=gen, dtype=F64) * (torch.rand(8, 5, generator=gen) < 0.4)
    h = b.relu(
        b.linear(x - torch.rand(5, generator=gen, dtype=F64), w, torch.randn(8, generator=gen, dtype=F64))
    )
    v = b.apply(
        "scale",
        b.sigmoid(b.linear(h, torch.randn(6, 8, generator=gen, dtype=F64))),
        factor=Const(torch.rand(6, generator=gen, dtype=F64) + 0.5),
    )
    va = b.linear(h, torch.randn(6, 8, generator=gen, dtype=F64) * (torch.rand(6, 8, generator=gen) < 0.5))
    f, t = b.gather(v, [0, 1, 2, 3]), b.gather(v, [1, 2, 4, 5])
    theta = b.gather(va, [0, 1, 3, 4]) - b.gather(va, [2, 5, 5, 0])
    p = f * t * b.cos(theta) + b.square(f) * 0.5
    q = f * t * b.sin(theta) - 2.0
    flows = b.linear(
        b.concat([p, q, b.square(v)]),
        torch.randn(7, 14, generator=gen, dtype=F64) * (torch.rand(7, 14, generator=gen) < 0.3),
    )
    return b.build({"y": b.concat([flows, b.square(b.gather(flows, [1, 3])), v])})


def _box(n: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centre, width = (
        torch.rand(1, n, generator=gen, dtype=F64) * 2 - 1,
        torch.rand(1, n, generator=gen, dtype=F64) * scale,
    )
    return centre - width / 2, centre + width / 2


@settings(max_examples=25, deadline=None, database=None)
@given(
    seed=st.integers(0, 10_000), scale=st.sampled_from([0.0, 1e-9, 0.5, 4.0, 40.0]), rows=st.integers(1, 3)
)
def test_pruned_graph_has_the_same_values_and_sound_bounds(seed: int, scale: float, rows: int) -> None:
    graph = _every_rule(seed)
    box = _box(5, seed, scale)
    problem = Problem.make(graph, box)
    n_out = problem.graph.nodes[problem.output].size
    gen = torch.Generator().manual_seed(seed)
    spec = torch.zeros(rows, n_out, dtype=F64)
    spec[torch.arange(rows), torch.randint(0, n_out, (rows,), generator=gen)] = torch.randn(
        rows, generator=gen, dtype=F64
    )
    pruned = prune(problem.graph, problem.output, spec)
    assert pruned is not None  # every spec here reads a part of the graph
    assert sum(n.size for n in pruned.graph.nodes) < sum(n.size for n in problem.graph.nodes)
    x = box[0] + (box[1] - box[0]) * torch.rand(500, 5, generator=gen, dtype=F64)
    corners = torch.where(torch.rand(64, 5, generator=gen) < 0.5, box[0], box[1])
    x = torch.cat([x, corners])
    want = problem.graph.forward(x)["y"].reshape(x.shape[0], -1) @ spec.T
    got = pruned.graph.forward(x)["pruned"].reshape(x.shape[0], -1) @ pruned.spec.T
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    upper = crown(pruned.graph, box, pruned.output, pruned.spec).upper[0]
    assert bool((want <= upper + 1e-9 * (1 + want.abs())).all())
    whole = crown(problem.graph, box, problem.output, spec).upper[0]
    # the same relaxations neuron by neuron, or tighter where pruning makes two nodes one (f * t of one
    # neuron becomes a square)
    assert bool((upper <= whole + 1e-9 * (1 + whole.abs())).all())


def test_base_intervals_follow_their_neurons() -> None:
    graph = _every_rule(1)
    box = _box(5, 1, 1.0)
    problem = Problem.make(graph, box)
    spec = torch.zeros(1, problem.graph.nodes[problem.output].size, dtype=F64)
    spec[0, 8] = 1.0
    pruned = prune(problem.graph, problem.output, spec)
    assert pruned is not None
    intervals = crown(problem.graph, box, problem.output, spec).intervals
    mapped = pruned.intervals(intervals)
    assert mapped is not None
    for i, new in pruned.at.items():
        if intervals[i] is None or mapped[new] is None:
            continue
        lo, _ = mapped[new]  # type: ignore[misc]
        assert lo.shape[-1] == pruned.graph.nodes[new].size
        assert torch.equal(lo.reshape(-1), intervals[i][0].reshape(-1)[pruned.kept[i]])  # type: ignore[index]


def test_graphs_it_cannot_prune_are_left_whole() -> None:
    b = GraphBuilder()
    x = b.input("x", (4,))
    y = b.reshape(b.tanh(x), (2, 2))  # a 2-D node
    assert prune(b.build({"y": y}), 2, torch.eye(4, dtype=F64)[:1]) is None
    b = GraphBuilder()
    x = b.input("x", (3,))
    graph = b.build({"y": b.tanh(b.linear(x, torch.ones(2, 3, dtype=F64)))})
    problem = Problem.make(graph, _box(3, 0, 1.0))
    assert prune(problem.graph, problem.output, torch.ones(1, 2, dtype=F64)) is None  # nothing to cut


@pytest.mark.parametrize("families", [["thermal_from"], ["p_balance", "q_balance"]])
def test_a_shipped_case_pruned_per_row_computes_its_rows(families: list[str]) -> None:
    from gridverify.surrogate.case import load_case
    from gridverify.verify.run import OUTPUT, prepare

    case = load_case("case14")
    _, graph, rows = prepare(case, families)
    box = case.region.box()
    problem = Problem.make(graph, box, OUTPUT)
    x = problem.lower + (problem.upper - problem.lower) * torch.rand(200, problem.lower.shape[1], dtype=F64)
    full = problem.graph.forward(x, keep_all=True)[problem.output].reshape(200, -1)
    for k in (0, rows.spec.shape[0] // 2, rows.spec.shape[0] - 1):
        pruned = prune(problem.graph, problem.output, rows.spec[k : k + 1])
        assert pruned is not None
        got = pruned.graph.forward(x)["pruned"].reshape(200, -1) @ pruned.spec.T
        assert torch.allclose(got, full @ rows.spec[k : k + 1].T, rtol=1e-12, atol=1e-12)

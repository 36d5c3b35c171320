"""Relations between neurons (`gridverify.bab.relations`): sound on every sub-box and under any split, and
what lets branch and bound bound a difference of two sigmoids of nearly equal inputs (a branch's angle
difference in a surrogate whose voltage angles come out of sigmoids)."""

from __future__ import annotations

from dataclasses import replace

import hypothesis.strategies as st
import torch
from hypothesis import given, settings

from gridverify.bab import SearchConfig, Verdict, maximise
from gridverify.bab.bound import BoundConfig, bound_domains
from gridverify.bab.branching import Choice
from gridverify.bab.domains import Problem, concat, select
from gridverify.bab.relations import apply_relations, find_relations
from gridverify.bab.search import _root_domains
from gridverify.bab.split import split_neurons
from gridverify.bounds.crown import crown
from gridverify.ir import GraphBuilder
from gridverify.ir.builder import rebuild
from gridverify.ir.graph import Graph

N_IN = 16


def _angles(seed: int, spread: float = 0.02) -> tuple[Graph, int]:
    """x (16,) -> stable relu layer (12) -> z (3,): two nearly equal pre-sigmoid angles and an unrelated
    one -> theta = 0.2 (sigmoid(z_0) - sigmoid(z_1)) + 0.1 sigmoid(z_2). Returns the graph and z's node."""
    gen = torch.Generator().manual_seed(seed)
    w1 = 0.05 * torch.randn(12, N_IN, generator=gen, dtype=torch.float64)
    b1 = torch.rand(12, generator=gen, dtype=torch.float64) + 0.5  # active relus: z is affine in x
    w = 10 * torch.randn(12, generator=gen, dtype=torch.float64)
    w2 = torch.stack([w, w + spread * torch.randn(12, generator=gen, dtype=torch.float64), -w.flip(0)])
    b = GraphBuilder()
    x = b.input("x", (N_IN,))
    z = b.linear(b.relu(b.linear(x, w1, b1)), w2, torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64))
    s = b.sigmoid(z)
    theta = b.linear(s, torch.tensor([[0.2, -0.2, 0.1]], dtype=torch.float64))
    graph = b.build({"theta": theta})
    return graph, next(i for i, n in enumerate(graph.nodes) if n.op == "sigmoid") - 1


def _box(centre: float, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.full((1, N_IN), centre, dtype=torch.float64)
    return c - radius, c + radius


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    centre=st.floats(-2.0, 2.0),
    radius=st.sampled_from([0.0, 1e-9, 0.01, 0.5, 3.0, 50.0]),
    shrink=st.floats(0.0, 1.0),
)
def test_relations_never_exclude_a_point_of_the_domain(
    seed: int, centre: float, radius: float, shrink: float
) -> None:
    """For points of the box and any intervals of z holding them (a split domain's, however narrow: down
    to the point itself), the related intervals still hold them, on degenerate and very wide boxes."""
    graph, z = _angles(seed)
    lo, hi = _box(centre, radius)
    problem = Problem.make(graph, (lo, hi), "theta")
    root = crown(problem.graph, (lo, hi), problem.output, torch.ones(1, 1, dtype=torch.float64))
    relations = find_relations(problem, root.intervals)
    gen = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(256, N_IN, generator=gen, dtype=torch.float64)
    values = problem.graph.forward(x, keep_all=True)[z]
    zl, zh = root.intervals[z]
    # each point's domain: the root interval shrunk toward the point (shrink 1: the point itself)
    dl = values - (values - zl) * (1 - shrink)
    dh = values + (zh - values) * (1 - shrink)
    intervals = [None] * len(problem.graph.nodes)
    intervals[z] = (dl, dh)
    narrowed = apply_relations(relations, tuple(intervals))[z]
    assert narrowed is not None
    slack = 1e-12 * (1 + values.abs())  # the float forward pass itself is a few ulps off the exact value
    assert bool((narrowed[0] <= values + slack).all()) and bool((values - slack <= narrowed[1]).all())


def test_a_related_pair_is_found_and_narrower() -> None:
    graph, z = _angles(0)
    lo, hi = _box(0.0, 1.0)
    problem = Problem.make(graph, (lo, hi), "theta")
    d, _ = _root_domains(problem, torch.ones(1, 1, dtype=torch.float64), SearchConfig(), None)
    rel = find_relations(problem, d.intervals).nodes[z]
    pairs = set(zip(rel.k.tolist(), rel.j.tolist()))
    assert {(0, 1), (1, 0)} <= pairs and not any(2 in p for p in pairs)  # z_2 runs the other way... alone
    width = (d.intervals[z][1] - d.intervals[z][0])[0]
    assert bool(((rel.hi - rel.lo) < 0.1 * width[rel.k]).all())


def _pieces(problem: Problem, n: int) -> tuple:
    """The root domain of max theta split into ``n`` pieces along z_0 (the neuron split only)."""
    config = SearchConfig()
    d, _ = _root_domains(problem, torch.ones(1, 1, dtype=torch.float64), config, None)
    relations = find_relations(problem, d.intervals)
    z = next(iter(relations.nodes))
    lo, hi = float(d.intervals[z][0][0, 0]), float(d.intervals[z][1][0, 0])
    pieces, rest = [], d
    for q in range(1, n):
        point = torch.tensor([lo + (hi - lo) * q / n], dtype=torch.float64)
        both = split_neurons(rest, Choice(torch.tensor([z]), torch.tensor([0]), point))
        pieces.append(select(both, torch.tensor([0])))
        rest = select(both, torch.tensor([1]))
    return concat([*pieces, rest]), relations


def test_splitting_one_angle_narrows_its_partner_and_the_bound() -> None:
    """Splits of z_0 alone leave z_1 on its root interval; with relations it follows z_0, and the bound of
    the angle difference falls to near the sampled maximum."""
    graph, _ = _angles(0)
    box = _box(0.0, 1.0)
    problem = Problem.make(graph, box, "theta")
    domains, relations = _pieces(problem, 32)
    config = BoundConfig(steps=5)
    plain = bound_domains(problem, domains, config).domains.bound
    related = bound_domains(problem, domains, config, relations).domains.bound
    x = box[0] + (box[1] - box[0]) * torch.rand(50_000, N_IN, dtype=torch.float64)
    sampled = float(graph.forward(x)["theta"].max())
    assert bool((related <= plain + 1e-12).all())
    assert sampled <= float(related.max()) < sampled + 0.5 * (float(plain.max()) - sampled)


def test_search_with_relations_proves_what_sampling_supports() -> None:
    graph, _ = _angles(0)
    box = _box(0.0, 1.0)
    x = box[0] + (box[1] - box[0]) * torch.rand(50_000, N_IN, dtype=torch.float64)
    sampled = float(graph.forward(x)["theta"].max())
    spec = torch.ones(1, 1, dtype=torch.float64)
    config = SearchConfig(timeout_s=20.0)
    root = maximise(graph, box, spec, config=replace(config, timeout_s=0.5, relations=False))[0]
    threshold = sampled + 0.1 * (root.upper - sampled)
    r = maximise(graph, box, spec, threshold=threshold, config=config)[0]
    assert r.verdict is Verdict.VERIFIED, (r.upper, threshold, sampled, r.stopped)
    assert sampled <= r.upper


def test_the_cut_is_at_the_related_node_unless_the_input_joins_below_it() -> None:
    graph, z = _angles(0)
    box = _box(0.0, 1.0)
    problem = Problem.make(graph, box, "theta")
    d, _ = _root_domains(problem, torch.ones(1, 1, dtype=torch.float64), SearchConfig(), None)
    assert find_relations(problem, d.intervals).cuts == (z,)
    # a balance-like output: the input itself joins the angles' function below z
    b, vals = rebuild(graph)
    x = vals[graph.input_ids["x"]]
    joined = b.add(vals[graph.output_ids["theta"]], b.linear(x, torch.ones(1, N_IN, dtype=torch.float64)))
    other = Problem.make(b.build({"y": joined}), box, "y")
    d, _ = _root_domains(other, torch.ones(1, 1, dtype=torch.float64), SearchConfig(), None)
    assert find_relations(other, d.intervals).cuts == ()


def test_every_piece_bound_holds_on_its_piece() -> None:
    """Each piece's bound (the full linear bound and the one at the cut node, whichever is lower) is at
    least every sampled value of the piece: points whose z_0 lies in the piece's split interval."""
    graph, z = _angles(3)
    box = _box(0.5, 2.0)
    problem = Problem.make(graph, box, "theta")
    domains, relations = _pieces(problem, 16)
    bounded = bound_domains(problem, domains, BoundConfig(steps=5), relations).domains
    x = box[0] + (box[1] - box[0]) * torch.rand(200_000, N_IN, dtype=torch.float64)
    values = problem.graph.forward(x, keep_all=True)
    z0, theta = values[z][:, 0], values[problem.output][:, 0]
    for i in range(domains.size):
        lo, hi = domains.intervals[z][0][i, 0], domains.intervals[z][1][i, 0]
        inside = (z0 >= lo) & (z0 <= hi)
        if bool(inside.any()):
            assert float(theta[inside].max()) <= float(bounded.bound[i]) + 1e-12

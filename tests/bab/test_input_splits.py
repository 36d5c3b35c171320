"""Input splitting: children's bounds from their parent's line (`split_inputs`) are sound on sampled points,
the dimension choice keeps boxes within `ASPECT` (`choose_input`), the split-mode window for input splits
(`_Mode.input_window_s`), and only the top children are attacked."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

from gridverify.bab import SearchConfig, Verdict, maximise
from gridverify.bab.bound import BoundConfig, Bounded, bound_domains, init_alpha
from gridverify.bab.branching import ASPECT, choose_input
from gridverify.bab.domains import Domains, Problem
from gridverify.bab.search import _Mode, _root_domains
from gridverify.bab.split import split_inputs
from gridverify.ir import Graph
from tests.bounds.random_graphs import random_graph, sample_box

F64 = torch.float64


def _bounded(seed: int, scale: float, n_in: int = 3) -> tuple[Problem, Bounded]:
    graph = random_graph(seed, depth=3, n_in=n_in)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(1, n_in, generator=gen, dtype=F64) * 2 - 1
    width = torch.rand(1, n_in, generator=gen, dtype=F64) * scale
    box = (centre - width / 2, centre + width / 2)
    problem = Problem.make(graph, box)
    spec = torch.randn(1, 3, generator=gen, dtype=F64)
    d, _ = _root_domains(problem, spec, SearchConfig())
    return problem, bound_domains(problem, d, BoundConfig(steps=2, refresh_intermediate=True))


def _split_twice(problem: Problem, b: Bounded, how: BoundConfig) -> Domains:
    """Two generations of input splits of ``b``'s domains, each bounded with ``how``."""
    for _ in range(2):
        dim, mid = choose_input(b, problem.upper - problem.lower)
        b = bound_domains(problem, split_inputs(b.domains, dim, mid), how)
    return b.domains


def _assert_bounds_hold(problem: Problem, d: Domains, seed: int) -> None:
    """Every finite bound of ``d`` is above the graph's values at 300 points sampled in its box."""
    for k in range(d.size):
        if not bool(torch.isfinite(d.bound[k])):
            continue
        lo, hi = d.lower[k : k + 1], d.upper[k : k + 1]
        pts = sample_box(lo, hi, 300, seed).reshape(-1, lo.shape[1])
        y = problem.graph.forward(pts)[problem.graph.outputs[0][0]].reshape(pts.shape[0], -1)
        values = y @ d.spec[k]
        assert float(values.max()) <= float(d.bound[k]) + 1e-9 * (1 + float(values.abs().max()))


@settings(max_examples=15, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.0, 1e-9, 0.3, 3.0, 40.0]))
def test_children_bounds_from_the_parent_line_hold(seed: int, scale: float) -> None:
    """Every child's bound (its parent's line over the child's box) is above the graph's values sampled in
    the child (corners included): degenerate, tiny, moderate and very wide boxes."""
    problem, b = _bounded(seed, scale)
    d = b.domains
    # a random graph can overflow on a very wide box (exp of 40): a bound that is not finite claims nothing
    assume(bool(torch.isfinite(d.bound).all()))
    for dim in range(d.lower.shape[1]):
        mid = 0.5 * (d.lower[:, dim] + d.upper[:, dim])
        children = split_inputs(d, torch.full((d.size,), dim), mid)
        assert (children.bound <= d.bound.repeat(2)).all()
        for k in range(children.size):
            lo, hi = children.lower[k : k + 1], children.upper[k : k + 1]
            pts = sample_box(lo, hi, 400, seed).reshape(-1, lo.shape[1])
            y = problem.graph.forward(pts)[problem.graph.outputs[0][0]].reshape(pts.shape[0], -1)
            values = y @ children.spec[k]
            assert float(values.max()) <= float(children.bound[k]) + 1e-9 * (1 + float(values.abs().max()))


@settings(max_examples=12, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.3, 3.0]))
def test_inherited_intermediate_lines_are_sound(seed: int, scale: float) -> None:
    """Two generations of input splits bounded with optimised alphas (steps > 1), which the children take as
    their intermediate lines (`bound._relaxer`): every box's bound is above the graph's sampled values."""
    problem, b = _bounded(seed, scale)
    how = BoundConfig(steps=3, refresh_intermediate=True)
    d = _split_twice(problem, b, how)
    _assert_bounds_hold(problem, d, seed)


def test_one_child_gains_the_line_slope() -> None:
    """y = 3 x1 + x2 (a line): the child on the low side of x1 gets bound max - 3 w1 / 2 without a pass."""
    from gridverify.ir import GraphBuilder

    b = GraphBuilder()
    x = b.input("x", (2,))
    graph = b.build({"y": b.linear(x, torch.tensor([[3.0, 1.0]], dtype=F64))})
    box = (torch.tensor([[0.0, 0.0]], dtype=F64), torch.tensor([[1.0, 1.0]], dtype=F64))
    problem = Problem.make(graph, box)
    d, _ = _root_domains(problem, torch.ones(1, 1, dtype=F64), SearchConfig())
    d = bound_domains(problem, d, BoundConfig(steps=1, refresh_intermediate=True)).domains
    assert abs(float(d.bound[0]) - 4.0) < 1e-9
    children = split_inputs(d, torch.tensor([0]), torch.tensor([0.5], dtype=F64))
    assert abs(float(children.bound[0]) - 2.5) < 1e-6 and abs(float(children.bound[1]) - 4.0) < 1e-9


def test_choose_input_keeps_the_aspect() -> None:
    """The coefficient favours dimension 0; once it is ASPECT times narrower than dimension 1 (relative to
    the root box), dimension 1 is split: no box gets more than 2 ASPECT times longer than wide."""
    problem, b = _bounded(3, 1.0, n_in=2)
    d = b.domains
    root = problem.upper - problem.lower
    coeff = torch.tensor([[10.0, 0.1]], dtype=F64)
    lower, upper = d.lower.clone(), d.upper.clone()
    for _ in range(6):
        dom = type(d)(**{**d.__dict__, "lower": lower, "upper": upper})
        dim, mid = choose_input(Bounded(dom, {}, coeff), root)
        k = int(dim[0])
        upper[0, k] = mid[0]
        rel = (upper - lower)[0] / root[0]
        assert float(rel.max() / rel.min()) <= 2 * ASPECT * (1 + 1e-9)


def test_input_window_is_longer() -> None:
    """Input splits are judged over their own window: a stall inside it keeps input splits."""
    mode = _Mode(by_input=True, allowed=True, window_s=1.0, gain=0.05, input_window_s=4.0)
    mode.observe(1.0, 0.0)
    mode.observe(1.0, 2.0)
    assert mode.by_input and not mode.switches
    mode.observe(1.0, 4.5)
    assert not mode.by_input and len(mode.switches) == 1
    mode.observe(1.0, 6.0)  # neuron splits: the short window
    assert mode.by_input


def _relu_net_first_output() -> tuple[Graph, tuple[Tensor, Tensor], Tensor, float]:
    """A random net on 3 inputs over [-1, 1]^3, the row of its first output, and that output's largest value
    at 20000 sampled points."""
    graph = random_graph(7, depth=3)
    box = (torch.full((1, 3), -1.0, dtype=F64), torch.full((1, 3), 1.0, dtype=F64))
    pts = sample_box(*box, 20000, 0).reshape(-1, 3)
    best = float(graph.forward(pts)["y"].reshape(pts.shape[0], -1)[:, 0].max())
    spec = torch.zeros(1, graph.nodes[graph.outputs[0][1]].size, dtype=F64)
    spec[0, 0] = 1.0
    return graph, box, spec, best


def test_input_split_search_never_proves_a_false_bound() -> None:
    """A relu net on 3 inputs: maximise with input splits; the certified upper bound is above the sampled
    maximum, and a threshold just below that maximum is never proved."""
    graph, box, spec, best = _relu_net_first_output()
    config = SearchConfig(timeout_s=4.0, input_split_max_dims=6)
    r = maximise(graph, box, spec, threshold=torch.tensor([best - 1e-6], dtype=F64), config=config)[0]
    assert r.verdict is not Verdict.VERIFIED
    assert r.upper >= best - 1e-9


@settings(max_examples=12, deadline=None, database=None)
@given(seed=st.integers(0, 10_000), scale=st.sampled_from([0.3, 3.0]))
def test_one_step_children_take_default_alphas_on_their_own_intervals(seed: int, scale: float) -> None:
    """Two generations of input splits bounded with one step (no alpha optimisation) and refreshed
    intervals: the output's pass takes CROWN's default alphas on each child's refreshed intervals
    (`bound._fresh_alpha`), which are what comes back, and every box's bound is above the graph's sampled
    values."""
    problem, b = _bounded(seed, scale)
    how = BoundConfig(steps=1, refresh_intermediate=True)
    d = _split_twice(problem, b, how)
    default = init_alpha(problem, d.intervals)
    assert d.alpha.keys() == default.keys()
    for k, a in d.alpha.items():
        assert torch.equal(a, default[k].expand_as(a))
    _assert_bounds_hold(problem, d, seed)


def test_one_step_bound_keeps_inherited_alphas_without_refresh() -> None:
    """Without refreshed intervals (neuron splits) a one-step bound keeps the domains' own alphas."""
    problem, b = _bounded(11, 3.0)
    d = b.domains
    d = type(d)(**{**d.__dict__, "alpha": {k: torch.full_like(v, 0.25) for k, v in d.alpha.items()}})
    out = bound_domains(problem, d, BoundConfig(steps=1, refresh_intermediate=False)).domains
    assert out.alpha and all(bool((v == 0.25).all()) for v in out.alpha.values())


def test_one_step_bound_keeps_inherited_alphas_after_a_neuron_split() -> None:
    """With refreshed intervals too, a one-step bound of domains with a neuron split (filtering's estimate in
    a tightening search) keeps the domains' own alphas: `_fresh_alpha` is for input splits."""
    problem, b = _bounded(11, 3.0)
    d = b.domains
    node = next(iter(d.split_lo))
    flags = torch.zeros_like(d.split_lo[node])
    flags.view(flags.shape[0], -1)[:, 0] = True
    alpha = {k: torch.full_like(v, 0.25) for k, v in d.alpha.items()}
    d = type(d)(**{**d.__dict__, "alpha": alpha, "split_lo": {**d.split_lo, node: flags}})
    out = bound_domains(problem, d, BoundConfig(steps=1, refresh_intermediate=True)).domains
    assert out.alpha and all(bool((v == 0.25).all()) for v in out.alpha.values())
    unsplit = type(d)(**{**d.__dict__, "split_lo": {**d.split_lo, node: torch.zeros_like(flags)}})
    fresh = bound_domains(problem, unsplit, BoundConfig(steps=1, refresh_intermediate=True)).domains
    assert any(not bool((v == 0.25).all()) for v in fresh.alpha.values())


def test_lean_input_split_search_is_sound_and_keeps_no_neuron_state(monkeypatch) -> None:
    """On a graph counted as large (`SMALL_GRAPH_NEURONS` 0) with one bound step, input splits keep lean
    domains (box, bound, input line only), never switch to neuron splits, and the certified bound is above
    the sampled maximum; a threshold just below it is never proved."""
    from gridverify.bab import search
    from gridverify.bab.maximise import Prepared
    from gridverify.deadline import Deadline

    monkeypatch.setattr(search, "SMALL_GRAPH_NEURONS", 0)
    graph, box, spec, best = _relu_net_first_output()
    # maximise (no threshold) to a tolerance far below the gap: the search splits until its deadline
    config = SearchConfig(timeout_s=4.0, input_split_max_dims=6, bound=BoundConfig(steps=1), tolerance=1e-12)
    p = Prepared.of(graph, box, spec)
    deadline = Deadline.after(4.0)
    s = search.Search.start(p.problem, p.spec, p.thr, config, p.base, deadline)
    assert s.mode.locked and s.mode.by_input and s.cap == config.max_domains
    r = s.go(deadline)[0]
    assert r.upper >= best - 1e-9
    assert not s.mode.switches and r.domains > 0  # settled (open set empty) or stopped by the deadline
    d = s.open_
    assert all(iv is None for iv in d.intervals) and not (d.alpha or d.beta_lo or d.split_lo or d.coeffs)
    # sampled values inside every open box stay below its bound
    for k in range(min(d.size, 20)):
        lo, hi = d.lower[k : k + 1], d.upper[k : k + 1]
        x = sample_box(lo, hi, 200, k).reshape(-1, lo.shape[1])
        y = p.problem.graph.forward(x)[p.problem.graph.outputs[0][0]].reshape(x.shape[0], -1) @ d.spec[k]
        assert float(y.max()) <= float(d.bound[k]) + 1e-9 * (1 + float(y.abs().max()))


def test_lean_refuses_neuron_splits() -> None:
    from gridverify.bab.search import _lean

    _, b = _bounded(3, 1.0)
    d = b.domains
    assert _lean(d).intervals == (None,) * len(d.intervals)
    if d.split_lo:
        z = next(iter(d.split_lo))
        flags = {**d.split_lo, z: torch.ones_like(d.split_lo[z])}
        with pytest.raises(ValueError):
            _lean(type(d)(**{**d.__dict__, "split_lo": flags}))

"""The LP finish of a domain's bound over the piecewise-linear part (`gridverify.bab.lp_cut`): sound on
degenerate to very wide boxes and under splits, never looser than the CROWN pass it finishes, and the same
whether HiGHS starts cold or from the last program's basis."""

from __future__ import annotations

import math
from fractions import Fraction

import hypothesis.strategies as st
import numpy as np
import torch
from hypothesis import given, settings
from scipy import sparse

from gridverify.bab import SearchConfig, maximise
from gridverify.bab.bound import BoundConfig, bound_domains
from gridverify.bab.branching import Choice
from gridverify.bab.domains import Problem
from gridverify.bab.lp_cut import LpCut
from gridverify.bab.search import _root_domains
from gridverify.bab.split import split_neurons
from gridverify.bounds.lp import (
    AffineShape,
    LinearProgram,
    LpSolver,
    ProgramShape,
    WarmSolver,
    dual_bound,
    dual_bounds,
)
from gridverify.deadline import Deadline
from gridverify.ir import GraphBuilder
from gridverify.ir.graph import Graph

N_IN = 6
SPEC = torch.ones(1, 1, dtype=torch.float64)


def _balance(seed: int) -> tuple[Graph, int]:
    """A balance row in miniature: x (6,) -> relu network -> z (3,) -> sin(z_0) + z_1 z_2 + v . x, so the
    input reaches the output both through the network and directly. Returns the graph and z's node."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    b = GraphBuilder()
    x = b.input("x", (N_IN,))
    h = b.relu(b.linear(b.relu(b.linear(x, rand(12, N_IN), rand(12))), 0.3 * rand(12, 12), rand(12)))
    z = b.linear(h, 0.3 * rand(3, 12), rand(3))
    s = b.sin(b.linear(z, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)))
    z1 = b.linear(z, torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64))
    z2 = b.linear(z, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    direct = b.linear(x, rand(1, N_IN))
    out = b.add(b.add(s, b.mul(z1, z2)), direct)
    graph = b.build({"row": out})
    return graph, next(i for i, n in enumerate(graph.nodes) if n.op == "sin") - 1


def _box(centre: float, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.full((1, N_IN), centre, dtype=torch.float64)
    return c - radius, c + radius


def _bounded(problem: Problem, split: Choice | None = None):  # type: ignore[no-untyped-def]
    d, _ = _root_domains(problem, SPEC, SearchConfig(), None)
    lp = LpCut.of(problem)
    assert lp is not None
    if split is not None:
        d = split_neurons(bound_domains(problem, d, BoundConfig(steps=1)).domains, split)
    return lp, bound_domains(problem, d, BoundConfig(steps=3), None, lp.nodes)


def _halves(problem: Problem, z: int) -> Choice:
    """A split of z_0 at the midpoint of its root interval."""
    root = bound_domains(problem, _root_domains(problem, SPEC, SearchConfig(), None)[0], BoundConfig(steps=1))
    mid = root.domains.intervals[z][0][0, 0] / 2 + root.domains.intervals[z][1][0, 0] / 2
    return Choice(torch.tensor([z]), torch.tensor([0]), mid.reshape(1))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    centre=st.floats(-2.0, 2.0),
    radius=st.sampled_from([0.0, 1e-9, 0.01, 0.5, 3.0, 50.0]),
    split=st.booleans(),
)
def test_lp_finish_is_sound_and_no_looser_than_its_pass(
    seed: int, centre: float, radius: float, split: bool
) -> None:
    """On every domain (the root, or both halves of a split of z_0 at its midpoint) the finished bound
    holds at every sampled point of the domain and is at most the CROWN bound of the pass it finishes."""
    graph, z = _balance(seed)
    lo, hi = _box(centre, radius)
    problem = Problem.make(graph, (lo, hi), "row")
    lp, b = _bounded(problem, _halves(problem, z) if split else None)
    d = b.domains
    lower = lp.lower(b.frontier, d, torch.arange(d.size), Deadline.after(math.inf))
    assert bool(torch.isfinite(lower).all())
    gen = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(4096, N_IN, generator=gen, dtype=torch.float64)
    values = problem.graph.forward(x, keep_all=True)
    y = values[problem.output].reshape(-1)
    for k in range(d.size):
        inside = ((values[z] >= d.intervals[z][0][k]) & (values[z] <= d.intervals[z][1][k])).all(1)
        if inside.any():
            top = float(y[inside].max())
            assert -float(lower[k]) >= top - 1e-9 * (1 + abs(top)), (k, -float(lower[k]), top)
        line = float(d.line_bound[k])  # up to the margin the certificate of the LP's bound gives away
        assert -float(lower[k]) <= line + 1e-6 * (1 + abs(line)), (k, -float(lower[k]), line)


def test_lp_finish_tightens_the_network_part() -> None:
    """Where the relus are unstable and the input joins below the network, the finish is strictly tighter
    than one CROWN pass with default lines (the pass loses the coupling of z with the direct term)."""
    graph, _ = _balance(3)
    lo, hi = _box(0.2, 0.5)
    problem = Problem.make(graph, (lo, hi), "row")
    lp, b = _bounded(problem)
    finished = -float(lp.lower(b.frontier, b.domains, torch.arange(1), Deadline.after(math.inf))[0])
    assert finished < float(b.domains.line_bound[0]) - 1e-3
    x = lo + (hi - lo) * torch.rand(20000, N_IN, dtype=torch.float64)
    assert finished >= float(problem.graph.forward(x)["row"].max())


def test_no_finish_where_the_output_is_piecewise_linear() -> None:
    b = GraphBuilder()
    x = b.input("x", (N_IN,))
    graph = b.build(
        {
            "y": b.linear(
                b.relu(b.linear(x, torch.eye(N_IN, dtype=torch.float64))),
                torch.ones(1, N_IN, dtype=torch.float64),
            )
        }
    )
    assert LpCut.of(Problem.make(graph, _box(0.0, 1.0), "y")) is None


def test_warm_solver_equals_cold_solves() -> None:
    """Programs of one shape on a sequence of boxes: warm-started solves give the cold solves' bounds."""
    graph, z = _balance(11)
    shape = ProgramShape.of(graph, frozenset({z, 0}))
    warm = WarmSolver(shape)
    rng = np.random.default_rng(0)
    for centre, radius in [(0.0, 1.0), (0.1, 0.5), (-1.0, 2.0), (0.3, 0.0), (0.0, 1.0)]:
        problem = Problem.make(graph, _box(centre, radius), "row")
        lp_cut, b = _bounded(problem)
        bounds = lp_cut._bounds(shape.order, b.domains, torch.arange(1))
        lp = shape.on({i: (lo[0], hi[0]) for i, (lo, hi) in bounds.items()})
        cost = rng.standard_normal(shape.n_cols)
        cold = LpSolver(lp).lower(cost, 5.0)
        assert abs(warm.lower(lp, cost, 5.0) - cold) <= 1e-7 * (1 + abs(cold))


def test_search_with_the_finish_is_sound() -> None:
    graph, _ = _balance(5)
    lo, hi = _box(-0.3, 0.8)
    config = SearchConfig(timeout_s=3.0)
    [res] = maximise(graph, (lo, hi), SPEC, None, "row", config)
    x = lo + (hi - lo) * torch.rand(50000, N_IN, dtype=torch.float64)
    assert res.upper >= float(graph.forward(x)["row"].max())
    assert res.upper >= res.worst


def _correlated(seed: int) -> tuple[Graph, torch.Tensor]:
    """x (1,) in [-1, 1] -> 3 relus -> z (2,) -> sin(z_0) * z_1 + x: two network outputs that move together
    (through the same three relus) and meet in a nonlinear op, as a branch's two end voltages do."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    x = b.input("x", (1,))
    h = b.relu(
        b.linear(
            x,
            torch.randn(3, 1, generator=gen, dtype=torch.float64),
            0.2 * torch.randn(3, generator=gen, dtype=torch.float64),
        )
    )
    z = b.linear(
        h,
        torch.randn(2, 3, generator=gen, dtype=torch.float64),
        torch.randn(2, generator=gen, dtype=torch.float64),
    )
    z0 = b.linear(z, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    z1 = b.linear(z, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    graph = b.build({"row": b.add(b.mul(b.sin(z0), z1), x)})
    return graph, torch.linspace(-1.0, 1.0, 200_001, dtype=torch.float64).reshape(-1, 1)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_sign_patterns_make_the_finish_exact_over_the_network(seed: int) -> None:
    """With every sign pattern of the (at most three) undecided relus, the finish is the exact minimum of
    the pass's linear function of the network part over the box (here on a fine grid of the one input):
    never above it, and above it by no more than the solver's tolerance. One program (the triangles) is
    sound too, and never tighter."""
    graph, grid = _correlated(seed)
    problem = Problem.make(graph, (grid[:1].T * 0 - 1.0, grid[:1].T * 0 + 1.0), "row")
    d, _ = _root_domains(problem, SPEC, SearchConfig(), None)
    lp = LpCut.of(problem, patterns=8)
    assert lp is not None
    b = bound_domains(problem, d, BoundConfig(steps=3), None, lp.nodes)
    assert b.frontier is not None and b.frontier.coeffs is not None and b.frontier.bias is not None
    values = problem.graph.forward(grid, keep_all=True)
    line = float(b.frontier.bias[0, 0]) + sum(
        (values[j].reshape(len(grid), -1) * c[0, 0].reshape(1, -1)).sum(1)
        for j, c in b.frontier.coeffs.items()
    )
    exact = float(line.min())
    everything = Deadline.after(math.inf)
    patterns = float(lp.lower(b.frontier, b.domains, torch.arange(1), everything)[0])
    one = float(LpCut.of(problem, patterns=1).lower(b.frontier, b.domains, torch.arange(1), everything)[0])  # type: ignore[union-attr]
    slack = 1e-6 * (1 + abs(exact))
    assert one <= patterns + slack
    assert patterns <= exact + 1e-9 * (1 + abs(exact))  # the grid's minimum is at or above the true one
    assert patterns >= exact - slack - 2e-5  # the grid's spacing (1e-5) times the line's slope (< 2)


def test_sign_patterns_help_where_the_triangles_decouple_the_outputs() -> None:
    """A seed where the triangles let the two outputs move apart: the patterns' finish is tighter than one
    program's by 0.34 (of seeds 0-39, three gain more than 0.05)."""
    graph, grid = _correlated(8)
    problem = Problem.make(graph, (grid[:1].T * 0 - 1.0, grid[:1].T * 0 + 1.0), "row")
    d, _ = _root_domains(problem, SPEC, SearchConfig(), None)
    lp = LpCut.of(problem, patterns=8)
    assert lp is not None
    b = bound_domains(problem, d, BoundConfig(steps=3), None, lp.nodes)
    everything = Deadline.after(math.inf)
    patterns = float(lp.lower(b.frontier, b.domains, torch.arange(1), everything)[0])
    one = float(LpCut.of(problem, patterns=1).lower(b.frontier, b.domains, torch.arange(1), everything)[0])  # type: ignore[union-attr]
    assert patterns > one + 0.3


def test_an_empty_program_is_proved_empty() -> None:
    """x_0 + x_1 >= 3 on the unit square has no point: the solver's dual ray gives a bound far above any
    value of the cost there (the last multipliers alone would give about 0)."""
    lp = LinearProgram(
        sparse.csc_array(np.array([[1.0, 1.0]])),
        np.array([3.0]),
        np.array([np.inf]),
        np.zeros(2),
        np.ones(2),
        {0: 0},
    )
    assert LpSolver(lp).lower(np.array([1.0, -1.0]), 5.0) > 1e3


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), radius=st.sampled_from([0.0, 0.05, 1.0, 20.0]))
def test_every_program_of_a_shape_holds_at_the_graph_s_points(seed: int, radius: float) -> None:
    """Programs filled into one shape's matrix (`ProgramShape.on`: chord slopes written into fixed slots)
    on sub-boxes of one box, with relu and abs kinks: every row and column bound holds at the values of
    every node at sampled points of the sub-box (a slope in the wrong slot breaks a chord row), and the
    bounds of several multipliers at once are those of each alone."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    b = GraphBuilder()
    x = b.input("x", (3,))
    h = b.relu(b.linear(x, rand(5, 3), rand(5)))
    z = b.linear(b.apply("abs", b.linear(h, rand(4, 5), rand(4))), rand(2, 4))
    graph = b.build({"z": z})
    target = graph.output_ids["z"]
    shape = ProgramShape.of(graph, frozenset({target}))
    rng = np.random.default_rng(seed)
    for centre in rng.uniform(-1.0, 1.0, (3, 3)):
        lo = torch.tensor(centre - radius * rng.uniform(0.0, 1.0, 3))[None]
        hi = torch.tensor(centre + radius * rng.uniform(0.0, 1.0, 3))[None]
        points = lo + (hi - lo) * torch.rand(2000, 3, generator=gen, dtype=torch.float64)
        values = graph.forward(torch.cat([lo, hi, points]), keep_all=True)
        lp = shape.on(
            {i: (values[i].reshape(len(points) + 2, -1).min(0).values.numpy() - 1e-9 * (1 + radius),
                 values[i].reshape(len(points) + 2, -1).max(0).values.numpy() + 1e-9 * (1 + radius))
             for i in shape.order}
        )  # fmt: skip
        v = np.concatenate([values[i].reshape(len(points) + 2, -1).numpy() for i in shape.order], axis=1)
        ax = v @ lp.a.toarray().T
        slack = 1e-9 * (1 + np.abs(v).max())
        assert np.all(ax >= lp.row_lower - slack) and np.all(ax <= lp.row_upper + slack)
        assert np.all(v >= lp.col_lower - slack) and np.all(v <= lp.col_upper + slack)
        cost = rng.standard_normal(shape.n_cols)
        duals = rng.standard_normal((4, lp.a.shape[0]))
        together = dual_bounds(lp, cost, duals)
        alone = [dual_bound(lp, cost, w) for w in duals]
        np.testing.assert_allclose(together, alone, rtol=1e-12, atol=1e-12)
        assert np.all(together <= (v @ cost).min() + slack)


def test_threads_give_each_domain_its_own_bound() -> None:
    """Domains dealt out to three workers (each with its own HiGHS instances) get the bounds one worker
    gives them, in their order: the two halves of a split, repeated, have different bounds."""
    graph, z = _balance(7)
    problem = Problem.make(graph, _box(0.1, 0.6), "row")
    one, b = _bounded(problem, _halves(problem, z))
    which = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    alone = one.lower(b.frontier, b.domains, which, Deadline.after(math.inf))
    three = LpCut.of(problem, threads=3)
    assert three is not None
    together = three.lower(b.frontier, b.domains, which, Deadline.after(math.inf))
    assert abs(float(alone[0]) - float(alone[1])) > 1e-6
    torch.testing.assert_close(together, alone, rtol=1e-7, atol=1e-9)
    assert three.solvers and all(len(v) == 3 for v in three.solvers.values())


def _stable(seed: int, reach: float) -> tuple[Graph, int, dict[int, np.ndarray]]:
    """x (3,) -> relu -> abs -> z (2,), every bias far enough from 0 that each relu / abs input keeps its
    sign for ``|x| <= reach``; the graph, z's node and those signs (by input node)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    w1, w2, w3 = rand(5, 3), rand(4, 5), rand(2, 4)
    s1 = torch.where(rand(5) > 0, 1.0, -1.0).to(torch.float64)
    b1 = s1 * (w1.abs().sum(1) * reach + 0.5)
    h1 = (w1.abs().sum(1) * reach + b1.abs()).max()  # no relu output above this
    s2 = torch.where(rand(4) > 0, 1.0, -1.0).to(torch.float64)
    b2 = s2 * (w2.abs().sum(1) * h1 + 0.5)
    b = GraphBuilder()
    x = b.input("x", (3,))
    pre1 = b.linear(x, w1, b1)
    pre2 = b.linear(b.relu(pre1), w2, b2)
    z = b.linear(b.apply("abs", pre2), w3, rand(2))
    graph = b.build({"z": z})
    lin = [i for i, node in enumerate(graph.nodes) if node.op == "linear"]
    return graph, graph.output_ids["z"], {lin[0]: s1.numpy(), lin[1]: s2.numpy()}


def _exact(
    graph: Graph, target: int, signs: dict[int, np.ndarray]
) -> tuple[list[list[Fraction]], list[Fraction]]:
    """The real affine map of ``target`` under ``signs``, in rational arithmetic (the weights as floats)."""
    maps: dict[int, tuple[list[list[Fraction]], list[Fraction]]] = {}
    for i, node in enumerate(graph.nodes):
        if node.op == "input":
            maps[i] = ([[Fraction(int(r == c)) for c in range(3)] for r in range(3)], [Fraction(0)] * 3)
        elif node.op == "linear":
            w = node.kwargs["weight"].tensor.to_dense().tolist()
            bias = node.kwargs["bias"].tensor.tolist()
            m, v = maps[node.inputs[0]]
            maps[i] = (
                [[sum((Fraction(w[r][k]) * m[k][c] for k in range(len(m))), Fraction(0)) for c in range(3)]
                 for r in range(len(w))],
                [Fraction(bias[r]) + sum((Fraction(w[r][k]) * v[k] for k in range(len(v))), Fraction(0))
                 for r in range(len(w))],
            )  # fmt: skip
        elif node.op in ("relu", "abs"):
            m, v = maps[node.inputs[0]]
            sign = signs[node.inputs[0]]
            f = [(1 if sg > 0 else (0 if node.op == "relu" else -1)) for sg in sign]
            maps[i] = (
                [[f[r] * e for e in row] for r, row in enumerate(m)],
                [f[r] * e for r, e in enumerate(v)],
            )
    return maps[target]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), reach=st.sampled_from([0.0, 1e-6, 1.0, 30.0, 1e4]))
def test_an_affine_program_holds_for_the_real_graph(seed: int, reach: float) -> None:
    """`AffineShape` where every relu / abs input keeps its sign over the box ``|x| <= reach``: the float
    map ``M x + v`` is within ``E`` of the graph's real (rational) affine map at every corner of the box, so
    the rows ``v - E <= z - M x <= v + E`` hold for the real graph; and they hold at sampled points of the
    float graph. Flipping one neuron's sign gives rows that sampled points break."""
    graph, z, signs = _stable(seed, reach)
    shape = AffineShape.of(graph, frozenset({z}), signs, np.full(3, reach), {})
    assert shape is not None and shape.n_cols == 5 and shape.template.shape == (2, 5)
    m = -shape.template.toarray()[:, :3]
    assert np.array_equal(shape.template.toarray()[:, 3:], np.eye(2))
    exact_m, exact_v = _exact(graph, z, signs)
    centre = (shape.row_lower + shape.row_upper) / 2
    for r in range(2):
        # the largest distance over the box between the real map and the float one (a corner's)
        far = sum(abs(exact_m[r][c] - Fraction(float(m[r, c]))) * Fraction(reach) for c in range(3))
        gap = far + abs(exact_v[r] - Fraction(float(centre[r])))
        assert gap <= Fraction(float(shape.row_upper[r])) - Fraction(float(centre[r]))
        assert gap <= Fraction(float(centre[r])) - Fraction(float(shape.row_lower[r]))
    gen = torch.Generator().manual_seed(seed)
    x = reach * (2 * torch.rand(500, 3, generator=gen, dtype=torch.float64) - 1)
    x = torch.cat([x, torch.full((1, 3), reach, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)])
    values = graph.forward(x)["z"].numpy()
    ax = values - x.numpy() @ m.T
    slack = 1e-12 * (1 + np.abs(values).max() + np.abs(x.numpy() @ m.T).max())
    assert np.all(ax >= shape.row_lower - slack) and np.all(ax <= shape.row_upper + slack)
    first = next(iter(signs))
    flipped = {**signs, first: np.concatenate([-signs[first][:1], signs[first][1:]])}
    wrong = AffineShape.of(graph, frozenset({z}), flipped, np.full(3, reach), {})
    assert wrong is not None
    moved = values - x.numpy() @ (-wrong.template.toarray()[:, :3]).T
    if reach > 0.1:
        assert np.any(moved < wrong.row_lower - slack) or np.any(moved > wrong.row_upper + slack)


def test_the_finish_on_a_stable_network_uses_the_affine_program_and_its_bounds() -> None:
    """Where every relu keeps its sign on the domains, the LP finish solves the affine program (columns:
    the input and the frontier), with the full program's bounds; a domain whose intervals leave a relu's
    sign open gets the full program."""
    graph, _ = _balance(7)
    problem = Problem.make(graph, _box(0.1, 1e-3), "row")
    lp, b = _bounded(problem)
    which = torch.tensor([0])
    affine, full = lp.shapes(b.frontier, b.domains, which)
    assert affine is not None and full is None
    assert affine.n_cols < ProgramShape.of(graph, frozenset(b.frontier.coeffs)).n_cols  # type: ignore[arg-type]
    bound = lp.lower(b.frontier, b.domains, which, Deadline.after(math.inf))
    out = torch.full((1,), -torch.inf, dtype=torch.float64)
    whole = ProgramShape.of(graph, frozenset(b.frontier.coeffs))  # type: ignore[arg-type]
    lp._solve(whole, b.frontier, b.domains, which, np.arange(1), out, Deadline.after(math.inf))
    assert torch.isfinite(bound).all()
    torch.testing.assert_close(bound, out, rtol=1e-9, atol=1e-9)
    # a domain whose first relu input straddles 0 (its intervals widened: still valid bounds of the domain)
    relu_in = next(graph.nodes[i].inputs[0] for i, n in enumerate(graph.nodes) if n.op == "relu")
    lo, hi = b.domains.intervals[relu_in]
    wide = list(b.domains.intervals)
    wide[relu_in] = (
        torch.minimum(lo, torch.full_like(lo, -1.0)),
        torch.maximum(hi, torch.full_like(hi, 1.0)),
    )
    d = b.domains.__class__(**{**b.domains.__dict__, "intervals": tuple(wide)})
    again = lp.lower(b.frontier, d, which, Deadline.after(math.inf))
    assert lp.programs[frozenset(b.frontier.coeffs)][1] is not None  # the full program, built for it
    assert torch.isfinite(again).all() and float(again[0]) <= float(bound[0]) + 1e-9


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    centre=st.floats(-1.0, 1.0),
    radius=st.sampled_from([0.0, 1e-6, 0.05, 0.5, 3.0]),
    split=st.booleans(),
)
def test_the_affine_program_keeps_the_open_relus_and_gives_the_full_program_s_bound(
    seed: int, centre: float, radius: float, split: bool
) -> None:
    """With some relus open on the domains (kept with their triangles and sign patterns) and the rest
    fixed: the affine program's certified bound equals the full program's on every domain (both exact
    over the piecewise-linear part, up to the affine rows' rounding margin), and its rows hold at the
    graph's values at sampled points of the box."""
    graph, z = _balance(seed)
    problem = Problem.make(graph, _box(centre, radius), "row")
    lp, b = _bounded(problem, _halves(problem, z) if split else None)
    which = torch.arange(b.domains.size)
    affine, _ = lp.shapes(b.frontier, b.domains, which)
    assert affine is not None  # 24 relus: never more than `KEPT` open
    got = lp.lower(b.frontier, b.domains, which, Deadline.after(math.inf))
    whole = ProgramShape.of(graph, frozenset(b.frontier.coeffs))  # type: ignore[arg-type]
    out = torch.full((which.numel(),), -torch.inf, dtype=torch.float64)
    lp._solve(whole, b.frontier, b.domains, which, np.arange(which.numel()), out, Deadline.after(math.inf))
    torch.testing.assert_close(got, out, rtol=1e-7, atol=1e-7)
    # rows at the graph's points: the input, kept inputs and outputs, targets (the root box's domain 0)
    x = problem.lower + (problem.upper - problem.lower) * torch.rand(
        500, N_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    values = graph.forward(x, keep_all=True)
    flat = {i: values[i].reshape(500, -1).numpy() for i in affine.order}
    cols = [flat[affine.order[0]]]
    for i, idx, _, _ in affine.kept:
        cols += [flat[graph.nodes[i].inputs[0]][:, idx], flat[i][:, idx]]
    cols += [flat[t] for t in sorted(c for c in affine.columns if c != affine.order[0])]
    v = np.concatenate(cols, axis=1)
    bounds = lp._bounds(affine.order, b.domains, torch.tensor([0]))
    program = affine.on({i: (lo[0], hi[0]) for i, (lo, hi) in bounds.items()})
    ax = v @ program.a.toarray().T
    slack = 1e-9 * (1 + np.abs(v).max())
    inside = np.all((v >= program.col_lower - slack) & (v <= program.col_upper + slack), axis=1)
    assert np.all(ax[inside] >= program.row_lower - slack) and np.all(ax[inside] <= program.row_upper + slack)

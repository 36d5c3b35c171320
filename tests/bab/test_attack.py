"""The falsifier: points stay in their boxes, values are float64 re-evaluations, conjunctions are minima,
planted counterexamples are found, deadlines hold; the verdict rule of closed and open unsafe sets."""

from __future__ import annotations

import time

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from gridverify.bab import AttackConfig, Verdict, attack, decide
from gridverify.deadline import Deadline
from gridverify.ir import Graph, GraphBuilder

N = 5


def _mlp(act: str, seed: int, width: int = 16) -> Graph:
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    h = b.input("x", (N,))
    n = N
    for _ in range(2):
        w = torch.randn(width, n, generator=gen, dtype=torch.float64) * (2.0 / n) ** 0.5
        h = b.apply(act, b.linear(h, w, 0.1 * torch.randn(width, generator=gen, dtype=torch.float64)))
        n = width
    return b.build({"y": b.linear(h, torch.randn(3, n, generator=gen, dtype=torch.float64) / n**0.5)})


GRAPH = _mlp("sigmoid", 0)
FAST = AttackConfig(restarts=8, corners=4, steps=15)


@settings(max_examples=40, deadline=None)
@given(
    centre=st.lists(st.floats(-100, 100), min_size=N, max_size=N),
    log_width=st.lists(st.one_of(st.just(None), st.floats(-12, 3)), min_size=N, max_size=N),
    row=st.integers(0, 2),
)
def test_points_stay_in_the_box_and_values_are_float64_forward(centre, log_width, row) -> None:
    """Degenerate (zero-width), tiny and very wide boxes alike: every point lies in its box and its
    value is `Graph.forward`'s in float64 at exactly that point (up to the last bits a batched matrix
    product may round differently)."""
    c = torch.tensor(centre, dtype=torch.float64).reshape(1, N)
    w = torch.tensor([0.0 if v is None else 10.0**v for v in log_width], dtype=torch.float64).reshape(1, N)
    lo, hi = c - w, c + w
    spec = torch.zeros(1, 3, dtype=torch.float64)
    spec[0, row] = 1.0
    x, v = attack(GRAPH, "y", spec, lo, hi, FAST)
    assert bool(((x >= lo) & (x <= hi)).all())
    assert float(v[0]) == pytest.approx(float(GRAPH.forward(x)["y"][0, row]), rel=1e-13, abs=1e-13)


def test_conjunctions_are_the_minimum_of_their_rows_minus_offsets() -> None:
    lo, hi = -torch.ones(2, N, dtype=torch.float64), torch.ones(2, N, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    spec = torch.stack([eye[:2], eye[1:]])  # (2 boxes, 2 rows, 3 outputs)
    offset = torch.tensor([[0.1, -0.2], [0.3, 0.0]], dtype=torch.float64)
    x, v = attack(GRAPH, "y", spec, lo, hi, FAST, offset=offset)
    y = GRAPH.forward(x)["y"]
    expect = torch.stack([torch.minimum(y[0, 0] - 0.1, y[0, 1] + 0.2), torch.minimum(y[1, 1] - 0.3, y[1, 2])])
    # the attack evaluates its points in one batch, this test two at a time: a matrix product may sum in
    # another order for another batch shape (last bits differ on some CPUs), so equal up to rounding
    torch.testing.assert_close(v, expect, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "sin"])
def test_planted_counterexamples_are_found(act: str) -> None:
    """Each output's threshold lies just below the best of 20,000 uniform points: a point above exists."""
    found = total = 0
    for seed in range(6):
        graph = _mlp(act, seed)
        gen = torch.Generator().manual_seed(seed)
        lo = torch.rand(1, N, generator=gen, dtype=torch.float64) - 1.0
        hi = lo + 1.5
        y = graph.forward(lo + (hi - lo) * torch.rand(20_000, N, generator=gen, dtype=torch.float64))["y"]
        thr = y.max(0).values - 1e-6
        _, v = attack(graph, "y", torch.eye(3, dtype=torch.float64), lo.expand(3, -1), hi.expand(3, -1))
        found += int((v > thr).sum())
        total += 3
    assert found == total


def test_given_starts_are_never_lost() -> None:
    """A start that is already the best point is kept (the best of every start is tracked)."""
    lo, hi = -torch.ones(1, N, dtype=torch.float64), torch.ones(1, N, dtype=torch.float64)
    spec = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    grid = lo + (hi - lo) * torch.rand(
        4000, N, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    y = GRAPH.forward(grid)["y"][:, 0]
    best = grid[y.argmax()].reshape(1, 1, N)
    _, v = attack(GRAPH, "y", spec, lo, hi, AttackConfig(restarts=1, corners=1, steps=1), starts=best)
    assert float(v[0]) >= float(y.max())


def test_deadline_in_the_past_returns_at_once_with_points_in_the_box() -> None:
    lo, hi = -torch.ones(64, N, dtype=torch.float64), torch.ones(64, N, dtype=torch.float64)
    spec = torch.eye(3, dtype=torch.float64)[torch.arange(64) % 3]
    start = time.monotonic()
    x, v = attack(GRAPH, "y", spec, lo, hi, AttackConfig(max_points=64), deadline=Deadline(start, 0.0))
    assert time.monotonic() - start < 5.0
    assert bool(((x >= lo) & (x <= hi)).all()) and v.shape == (64,)


def test_target_stops_the_search_early() -> None:
    lo, hi = -torch.ones(1, N, dtype=torch.float64), torch.ones(1, N, dtype=torch.float64)
    spec = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    _, v = attack(GRAPH, "y", spec, lo, hi, AttackConfig(steps=10_000), target=-1e9)
    assert float(v[0]) > -1e9


def test_decide_open_and_closed_unsafe_sets() -> None:
    """Open unsafe set ``> t``: a bound equal to t proves, a value equal to t does not violate. Closed
    unsafe set ``>= t``: the reverse at equality."""
    assert decide(1.0, 0.5, 1.0) is Verdict.VERIFIED
    assert decide(1.0, 1.0, 1.0) is Verdict.VERIFIED
    assert decide(1.0, 0.5, 1.0, closed=True) is Verdict.UNKNOWN
    assert decide(1.0, 1.0, 1.0, closed=True) is Verdict.VIOLATED
    assert decide(0.99, 0.5, 1.0, closed=True) is Verdict.VERIFIED
    assert decide(2.0, 1.5, 1.0) is Verdict.VIOLATED


def test_search_says_why_it_stopped() -> None:
    """A row the search cannot settle in its budget ends with "time"; a settled one with "settled"."""
    from gridverify.bab import SearchConfig, maximise

    lo, hi = -torch.ones(1, N, dtype=torch.float64), torch.ones(1, N, dtype=torch.float64)
    spec = torch.eye(3, dtype=torch.float64)[:2]
    r = maximise(GRAPH, (lo, hi), spec, threshold=torch.tensor([-1e6, 1e6]), config=SearchConfig(timeout_s=2))
    assert r[0].verdict is Verdict.VIOLATED and r[0].stopped == "settled"
    assert r[1].verdict is Verdict.VERIFIED and r[1].stopped == "settled"
    tight = maximise(GRAPH, (lo, hi), spec[:1], threshold=r[0].worst + 1e-9, config=SearchConfig(timeout_s=1))
    # just above the worst point found: unknown at the end of the budget (unless a better point turns up)
    expected = ("time", "memory") if tight[0].verdict is Verdict.UNKNOWN else ("settled",)
    assert tight[0].stopped.split(" ")[0] in expected  # "time (after input splits from 0.4 s)" names switches

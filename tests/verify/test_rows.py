"""The screen's (index, sign) rows against the dense one-hot specification, and its memory.

`Rows` keeps every specification row as (output index, sign); the screen bounds blocks of rows and evaluates
its pool of loads in chunks of points. On case14 this must give the bounds (up to a few ulps on rare rows)
and the very values of one dense CROWN pass and one dense points x rows table; on case118 with a small
budget, no tensor the screen allocates may grow with rows x outputs.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from gridverify.bab import line_corners
from gridverify.bounds import crown
from gridverify.deadline import Deadline
from gridverify.surrogate.case import load_case
from gridverify.verify.run import (
    OUTPUT,
    Budget,
    Rows,
    VerifyConfig,
    _pool,
    _scan,
    prepare,
    screen,
    screen_bounds,
    tightened_base,
)


@pytest.fixture(scope="module")
def case14():
    return load_case("case14")


@pytest.fixture(scope="module")
def prepared14(case14):
    return prepare(case14, None)


def test_rows_are_the_dense_one_hot_rows(prepared14) -> None:
    _, graph, rows = prepared14
    dense = rows.spec
    assert dense.shape == (len(rows), graph.nodes[graph.outputs[0][1]].size)
    assert torch.equal(dense.abs().sum(1), torch.ones(len(rows), dtype=torch.float64))
    assert torch.equal(rows.usage(), dense.abs().sum(0, keepdim=True))
    back = Rows.from_dense(dense, rows.owner)
    assert np.array_equal(back.index, rows.index) and np.array_equal(back.sign, rows.sign)
    y = torch.randn(7, rows.n_out, dtype=torch.float64)
    assert torch.equal(rows.select(y), y @ dense.T)
    assert torch.equal(rows.select(y, [3, 1]), y @ dense[[3, 1]].T)
    assert torch.equal(rows.block([5, 0]), dense[[5, 0]])
    with pytest.raises(ValueError, match="single output"):
        Rows.from_dense(dense[:2] + dense[2:4])


@pytest.mark.parametrize("memory_gb", [4.0, 1e-6])  # one block of all rows; blocks of 8 rows
def test_screen_bounds_equal_one_dense_crown_pass(case14, prepared14, memory_gb: float, tmp_path) -> None:
    _, graph, rows = prepared14
    box = case14.region.box()
    config = VerifyConfig(timeout_s=10.0, tighten_share=0.3, tighten_cache=tmp_path)
    deadline = Deadline.after(config.timeout_s)
    base = tightened_base(graph, box, rows, config, deadline)
    assert base is not None
    dense_base = tightened_base(graph, box, rows.spec, config, deadline)  # the LP reads the same neurons
    assert all(
        (a is None and b is None) or (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))  # type: ignore[index]
        for a, b in zip(base, dense_base)  # type: ignore[arg-type]
    )
    budget = Budget.of(graph, memory_gb)
    assert budget.crown_rows() < len(rows) or memory_gb > 1
    upper, corners = screen_bounds(graph, box, rows, budget, base)
    dense = crown(graph, box, OUTPUT, rows.spec, base=base)
    # the same arithmetic on other tensor layouts (a family's own coefficients, not slices of all
    # outputs'): equal, or a few ulps apart on a few rows (1 of 186 rows, 9e-16, on some LP bases; 3 since
    # IBP widens linear maps by a margin of the magnitudes they sum, which the layouts round differently)
    same = upper == dense.upper[0]
    assert int((~same).sum()) <= 4
    assert torch.allclose(upper, dense.upper[0], rtol=1e-13, atol=1e-14)
    lo, hi = box
    dense_corners = line_corners(dense.linear, graph, lo, hi)
    assert torch.equal(corners[same], dense_corners[same])  # type: ignore[index]


def test_scan_equals_the_dense_table(case14, prepared14) -> None:
    _, graph, rows = prepared14
    lo, hi = case14.region.box()
    x = _pool(lo, hi, 300)
    open_rows = torch.arange(0, len(rows), 3)
    for memory_gb in (4.0, 1e-6):  # all points in one forward pass; one point per pass
        budget = Budget.of(graph, memory_gb)
        step = budget.points(len(rows))
        assert step >= len(x) if memory_gb > 1 else step == 1
        # a forward pass rounds by its batch's shape: the table from passes of the same points
        y = torch.cat([graph.forward(x[k : k + step])[OUTPUT] for k in range(0, len(x), step)])
        table = y.reshape(x.shape[0], -1) @ rows.spec.T  # (P, R)
        worst, at, top = _scan(graph, x, rows, budget, open_rows, 4)
        assert torch.equal(worst, table.max(0).values)
        assert torch.equal(table[at, torch.arange(len(rows))], worst)
        assert torch.equal(
            table[:, open_rows].gather(0, top).sort(0).values,
            table[:, open_rows].topk(4, dim=0).values.sort(0).values,
        )


def test_screen_takes_rows_or_their_dense_matrix(case14, prepared14) -> None:
    _, graph, rows = prepared14
    box = case14.region.box()
    thresholds = torch.full((len(rows),), 1e-4, dtype=torch.float64)
    config = replace(VerifyConfig(), attack=replace(VerifyConfig().attack, steps=0))  # no falsifier
    a = screen(graph, box, rows, thresholds, config)
    b = screen(graph, box, rows.spec, thresholds, config)
    assert [(r.verdict, r.upper, r.worst) for r in a] == [(r.verdict, r.upper, r.worst) for r in b]
    # blocks of 8 rows, one point per forward pass (which rounds the values by its batch: 1e-15 apart)
    c = screen(graph, box, rows, thresholds, replace(config, memory_gb=1e-6))
    assert [r.verdict for r in a] == [r.verdict for r in c]
    assert np.allclose([r.worst for r in a], [r.worst for r in c], rtol=1e-12, atol=1e-14)
    assert [r.upper for r in a if r.upper > r.worst] == [r.upper for r in c if r.upper > r.worst]


def test_screen_memory_does_not_grow_with_rows_times_outputs(monkeypatch) -> None:
    """case118 (about 1200 rows x 1100 outputs) on a small budget: no tensor the screen allocates has
    rows x outputs entries (a dense specification, a points x rows table of the whole pool)."""
    case = load_case("case118")
    _, graph, rows = prepare(case, None)
    box = case.region.box()
    n, r = rows.n_out, len(rows)
    largest = [0]
    original = Rows.block

    def block(self, which, device="cpu"):
        out = original(self, which, device)
        largest[0] = max(largest[0], out.numel())
        return out

    monkeypatch.setattr(Rows, "block", block)
    config = VerifyConfig(memory_gb=0.05, samples=64)
    config = replace(config, attack=replace(config.attack, rounds=1, steps=5))
    budget = Budget.of(graph, config.memory_gb)
    assert budget.crown_rows() * n < r * n / 4  # the budget splits the rows into several blocks
    thresholds = torch.full((r,), 1e-4, dtype=torch.float64)
    results = screen(graph, box, rows, thresholds, config, until=Deadline.after(10.0))
    assert len(results) == r
    assert 0 < largest[0] <= max(budget.crown_rows(), budget.dense_rows()) * n < r * n / 4
    # the pool's table: points per chunk x rows stays within the budget's quarter
    assert budget.points(r) * (budget.point_bytes + 8 * r) <= config.memory_gb * 2**30 / 4


def test_a_search_out_of_memory_keeps_the_screen_s_answers(case14, monkeypatch) -> None:
    """Every chunk's search runs out of memory: the run still ends with a certificate, each row with the
    screen's answer."""
    import gridverify.verify.run as run

    def no_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")

    monkeypatch.setattr(run, "begin", no_memory)
    lines: list[str] = []
    config = VerifyConfig(timeout_s=6.0, replay=False, tighten_share=0.0)
    cert = run.verify(case14, families=("p_balance", "thermal_from"), config=config, log=lines.append)
    assert len(cert.records) == 34
    assert any("out of memory" in line for line in lines)
    assert {r.verdict for r in cert.records} <= {"verified", "violated", "unknown"}

    def other(*args, **kwargs):
        raise RuntimeError("not a memory problem")

    monkeypatch.setattr(run, "begin", other)
    with pytest.raises(RuntimeError, match="not a memory problem"):
        run.verify(case14, families=("p_balance",), config=config)


def test_rows_run_alone_while_time_allows_then_in_chunks() -> None:
    from gridverify.verify.run import VerifyConfig, chunk_size

    config = replace(VerifyConfig(), row_alone_s=10.0)  # 10 s a row alone, at most 64 rows a run
    assert chunk_size(26, 400.0, config) == 1  # case118's open rows at 600 s: one search each
    assert chunk_size(26, 100.0, config) == 3
    assert chunk_size(5000, 200.0, config) == 64  # case1354: chunks as before
    assert chunk_size(3, 0.0, config) >= 3  # no time: all in one run
    assert chunk_size(26, 400.0, replace(config, row_alone_s=0.0)) == 64


def test_hard_rows_get_the_time_the_quick_round_leaves(case14, monkeypatch) -> None:
    """Every open row is first searched for at most `row_alone_s`; the rows still open then share what is
    left, uncapped, in the search they had (`Paused`: the real search, spied on)."""
    import gridverify.verify.run as run
    from gridverify.bab.search import Search

    calls: list[tuple[int, int, float, list[float]]] = []
    real = Search.go

    def spy(self, deadline):  # type: ignore[no-untyped-def]
        found = real(self, deadline)
        calls.append((id(self), len(found), deadline.timeout_s, [r.upper for r in found]))
        return found

    monkeypatch.setattr(Search, "go", spy)
    lines: list[str] = []
    config = VerifyConfig(timeout_s=24.0, replay=False, row_alone_s=0.5, narrow_share=0.0)
    cert = run.verify(case14, families=("p_balance",), config=config, log=lines.append)
    quick = [c for c in calls if c[2] <= 0.5 * c[1] + 1e-9]
    assert quick, "no search capped at row_alone_s per row"
    again = [line for line in lines if "decide round 2" in line]
    assert again, lines  # p_balance rows of case14 do not all settle in 0.5 s
    assert any(c[2] > 0.5 * c[1] + 1e-9 for c in calls)  # later rounds are not capped
    turns = [c[0] for c in calls]
    resumed = {key for key in turns if turns.count(key) > 1}
    assert resumed, "no search of the first round went on in the second"
    for key in resumed:  # a search's bounds only narrow from one turn to the next
        turns = [c[3] for c in calls if c[0] == key]
        assert all(b <= a + 1e-12 for first, then in itertools.pairwise(turns) for a, b in zip(first, then))
    assert {r.verdict for r in cert.records} <= {"verified", "violated", "unknown"}
    assert all(r.bound >= r.worst for r in cert.records)


def test_a_new_search_s_root_comes_out_of_its_turn(case14, monkeypatch) -> None:
    """The turn a chunk gets starts before its search's root is bounded, and its first `go` ends by it:
    the root's alpha-CROWN and attack are not added on top of the share (they were: a 6 s `verify`
    spent 5.8 s searching where 5.4 s were its share, and its replay was cut)."""
    import time

    import gridverify.verify.run as run
    from gridverify.bab.search import Search

    began: list[float] = []
    turns: list[tuple[float, float, float]] = []
    real_begin, real_go = run.begin, Search.go

    def spy_begin(*args, **kwargs):  # type: ignore[no-untyped-def]
        began.append(time.monotonic())
        return real_begin(*args, **kwargs)

    def spy_go(self, deadline):  # type: ignore[no-untyped-def]
        found = real_go(self, deadline)
        turns.append((deadline.start, deadline.end, time.monotonic()))
        return found

    monkeypatch.setattr(run, "begin", spy_begin)
    monkeypatch.setattr(Search, "go", spy_go)
    config = VerifyConfig(timeout_s=6.0, replay=False, tighten_share=0.0)
    run.verify(case14, families=("p_balance",), config=config)
    assert began and turns
    first = [t for t in turns if t[0] <= began[0]]
    assert first, "the first search's turn starts after its root"
    # a batch or a falsifier round that started before the end may finish after it
    assert all(ended <= end + 0.5 for _, end, ended in turns)


@pytest.mark.parametrize("climb_violated", [False, True])
def test_the_screen_s_full_pass_climbs_the_undecided_rows(
    case14, prepared14, monkeypatch, climb_violated
) -> None:
    """The quick falsifier pass reaches every open row; the full one only the rows no load violates yet
    (all open rows with ``climb_violated``). Verdicts follow the rows' intervals either way."""
    import gridverify.verify.run as run

    _, graph, rows = prepared14
    passes: list[set[int]] = []
    real = run._falsify_rows

    def spy(graph, box, rows, which, *args):  # type: ignore[no-untyped-def]
        passes.append(set(which.tolist()))
        return real(graph, box, rows, which, *args)

    monkeypatch.setattr(run, "_falsify_rows", spy)
    thresholds = torch.full((len(rows),), 0.01, dtype=torch.float64)
    config = replace(
        VerifyConfig(climb_violated=climb_violated), attack=replace(VerifyConfig().attack, rounds=1)
    )
    found = screen(graph, case14.region.box(), rows, thresholds, config)
    assert len(passes) == 2
    quick, full = passes
    violated = {r.spec for r in found if r.worst > 0.01}
    assert violated & quick, "no open row violated: the test needs one"
    if climb_violated:
        assert full == quick
    else:  # rows dropped are those violated after the quick pass (the full pass may violate more)
        assert full <= quick and quick - full and quick - full <= violated
    for r in found:
        assert r.upper >= r.worst
        assert (r.verdict.value == "violated") == (r.worst > 0.01)


def test_the_screen_s_full_pass_stops_at_its_share(case14, prepared14, monkeypatch) -> None:
    """The full falsifier pass ends ``climb_share`` of the budget after it starts (or at the screen's
    falsifier deadline, if that comes first); the quick pass runs to the screen's deadline."""
    import gridverify.verify.run as run

    _, graph, rows = prepared14
    left: list[float] = []
    real = run._falsify_rows

    def spy(graph, box, rows, which, starts, cfg, until, budget):  # type: ignore[no-untyped-def]
        left.append(until.end - time.monotonic())
        return real(graph, box, rows, which, starts, cfg, until, budget)

    monkeypatch.setattr(run, "_falsify_rows", spy)
    thresholds = torch.full((len(rows),), 0.01, dtype=torch.float64)
    config = VerifyConfig(timeout_s=100.0, climb_share=0.02, attack=replace(VerifyConfig().attack, rounds=1))
    screen(graph, case14.region.box(), rows, thresholds, config, Deadline.after(60.0))
    quick, full = left
    assert 50.0 < quick <= 60.0
    assert 0.0 < full <= 2.0
    left.clear()
    screen(
        graph, case14.region.box(), rows, thresholds, replace(config, climb_share=1.0), Deadline.after(60.0)
    )
    assert 50.0 < left[1] <= 60.0, "the screen's deadline caps the full pass"


def test_narrowing_searches_take_their_own_lp_finish(case14, monkeypatch) -> None:
    """Searches that decide rows (a threshold) finish domains with `VerifyConfig.search`'s LP settings
    (sign patterns); searches that narrow violated rows (no threshold) with `VerifyConfig.narrow_lp`."""
    import gridverify.verify.run as run

    seen: list[tuple[bool, float, int]] = []
    real = run.begin

    def spy(prepared, search, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((prepared.thr is None, search.lp_cut, search.lp_patterns))
        return real(prepared, search, *args, **kwargs)

    monkeypatch.setattr(run, "begin", spy)
    config = VerifyConfig(
        timeout_s=8.0, replay=False, tighten_share=0.0, narrow_lp=(0.5, 2), narrow_share=0.5
    )
    run.verify(case14, families=("p_balance",), config=config)
    decide = {(cut, patterns) for narrow, cut, patterns in seen if not narrow}
    narrow = {(cut, patterns) for narrow, cut, patterns in seen if narrow}
    assert decide == {(config.search.lp_cut, config.search.lp_patterns)}
    assert narrow == {(0.5, 2)}

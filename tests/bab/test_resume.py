"""A search stopped at its deadline goes on from where it stopped (`Search.go` again): no second root, bounds
that only narrow, and sound at every stop."""

import time

import pytest
import torch

import gridverify.bab.search as search_module
from gridverify.bab import Prepared, SearchConfig, Verdict, begin, maximise
from gridverify.deadline import Deadline
from gridverify.ir import GraphBuilder
from gridverify.verify.run import Paused

F64 = torch.float64


def _graph():
    b = GraphBuilder()
    x = b.input("x", (3,))
    y = b.sin(3 * x[0]) * x[1] + b.cos(x[0] * x[2]) - x[1] * x[2] + b.sigmoid(2 * x[2] - x[0])
    y = b.reshape(y, (1,))
    return b.build({"y": b.concat([y, -y])})


def _sampled_max(graph, lower, upper, n=200_000):
    u = torch.rand(n, lower.shape[1], generator=torch.Generator().manual_seed(3), dtype=F64)
    return graph.forward(lower + (upper - lower) * u)["y"].max(0).values


def test_second_go_narrows_without_a_second_root(monkeypatch: pytest.MonkeyPatch) -> None:
    graph = _graph()
    lower, upper = torch.full((1, 3), -1.5, dtype=F64), torch.full((1, 3), 1.5, dtype=F64)
    spec = torch.eye(2, dtype=F64)
    sampled = _sampled_max(graph, lower, upper)
    config = SearchConfig(timeout_s=30, input_split_max_dims=0, input_split_switch_dims=0)
    run = begin(Prepared.of(graph, (lower, upper), spec), config, Deadline.after(0.5))
    roots = []
    real = search_module.alpha_crown
    monkeypatch.setattr(search_module, "alpha_crown", lambda *a, **k: roots.append(1) or real(*a, **k))
    first = run.go(Deadline.after(0.5))
    second = run.go(Deadline.after(3.0))
    assert not roots  # the root was bounded once, in `begin`
    for k in range(2):
        assert first[k].upper >= float(sampled[k]) - 1e-12 and second[k].upper >= float(sampled[k]) - 1e-12
        assert second[k].upper <= first[k].upper + 1e-12  # the open domains go on: never looser
        assert second[k].worst >= first[k].worst
        w = second[k].witness.reshape(1, 3)
        assert bool(((w >= lower) & (w <= upper)).all())
        assert float(graph.forward(w)["y"][0, k]) == pytest.approx(second[k].worst, abs=1e-12)
        # this call's own history and domains, times since its own deadline's start
        assert second[k].history and all(0.0 <= t <= 3.5 for t, _ in second[k].history)
        assert second[k].history[0][1] <= first[k].upper + 1e-12
    assert sum(r.domains for r in second) > 0


def test_resumed_threshold_search_agrees_with_one_long_search() -> None:
    """Two turns of a decided row give the verdict one search gives with their time together."""
    graph = _graph()
    lower, upper = torch.full((1, 3), -0.5, dtype=F64), torch.full((1, 3), 0.5, dtype=F64)
    spec = torch.eye(2, dtype=F64)[:1]
    true_max = float(_sampled_max(graph, lower, upper)[0])
    for thr, want in ((true_max + 0.02, Verdict.VERIFIED), (true_max - 0.02, Verdict.VIOLATED)):
        config = SearchConfig(timeout_s=20, input_split_max_dims=0, input_split_switch_dims=0)
        (long,) = maximise(graph, (lower, upper), spec, thr, config=config)
        run = begin(Prepared.of(graph, (lower, upper), spec, thr), config, Deadline.after(0.2))
        run.go(Deadline.after(0.2))
        began = time.monotonic()
        (r,) = run.go(Deadline.after(20.0))
        assert long.verdict is want and r.verdict is want
        assert r.stopped == "settled" and time.monotonic() - began < 20.0
        again = run.go(Deadline.after(5.0))  # nothing open: it returns at once, the answer kept
        assert again[0].verdict is want and again[0].domains == 0


def test_paused_keeps_searches_within_its_memory_and_groups_their_rows() -> None:
    graph = _graph()
    lower, upper = torch.full((1, 3), -1.0, dtype=F64), torch.full((1, 3), 1.0, dtype=F64)
    config = SearchConfig(timeout_s=5, input_split_max_dims=0, input_split_switch_dims=0)
    runs = []
    for k in range(2):
        run = begin(
            Prepared.of(graph, (lower, upper), torch.eye(2, dtype=F64)[k : k + 1]), config, Deadline.after(5)
        )
        run.go(Deadline.after(0.3))
        runs.append(run)
    assert all(r.open_bytes > 0 for r in runs)
    roomy = Paused(memory_bytes=runs[0].open_bytes + runs[1].open_bytes)
    roomy.keep([4, 7], runs[0])
    roomy.keep([2], runs[1])
    assert roomy.chunks([9, 7, 2, 4]) == ([((4, 7), [7, 4]), ((2,), [2])], [9])
    tight = Paused(memory_bytes=runs[0].open_bytes)
    tight.keep([4, 7], runs[0])
    tight.keep([2], runs[1])  # does not fit beside the first: that row starts anew
    assert list(tight.searches) == [(4, 7)]
    assert tight.chunks([2, 4]) == ([((4, 7), [4])], [2])


def test_a_resumed_search_s_stall_windows_follow_its_whole_time() -> None:
    """`_Mode`'s windows are a share of all the time a search has had, not of its first turn (a first turn
    of 0.5 s would leave a resumed search switching modes after every 0.05 s without progress)."""
    graph = _graph()
    lower, upper = torch.full((1, 3), -1.0, dtype=F64), torch.full((1, 3), 1.0, dtype=F64)
    config = SearchConfig(timeout_s=5, input_split_max_dims=0, stall_window=0.1)
    run = begin(Prepared.of(graph, (lower, upper), torch.eye(2, dtype=F64)[:1]), config, Deadline.after(5))
    run.go(Deadline.after(0.5))
    assert run.mode.window_s == pytest.approx(0.05)
    assert run.mode.input_window_s == pytest.approx(0.05 * 3)  # times the free input dimensions
    spent = run.active_s  # the turn, less a batch it had no time for (longer on a loaded machine)
    assert 0.0 < spent <= 1.0
    run.go(Deadline.after(2.0))
    assert run.mode.window_s == pytest.approx(0.1 * (spent + 2.0))

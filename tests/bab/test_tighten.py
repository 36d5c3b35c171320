"""Boundary-neuron tightening: which neurons, sound intervals, and searches that use them."""

import time

import torch

from gridverify.bab import SearchConfig, TightenConfig, Verdict, boundary_neurons, maximise, tighten
from gridverify.bab.domains import Problem
from gridverify.bounds import crown
from gridverify.deadline import Deadline
from gridverify.ir import Graph, GraphBuilder

F64 = torch.float64


def _surrogate_like() -> Graph:
    """A relu MLP (3 -> 16 -> 16 -> 3) whose outputs a, b, c feed ``sin(a - b) * sigmoid(c)``: a power-flow
    surrogate in miniature (angles through their difference, a voltage through a sigmoid)."""
    gen = torch.Generator().manual_seed(11)
    b = GraphBuilder()
    x = b.input("x", (3,))
    h = b.relu(
        b.linear(x, torch.randn(16, 3, generator=gen, dtype=F64), torch.randn(16, generator=gen, dtype=F64))
    )
    h = b.relu(
        b.linear(h, torch.randn(16, 16, generator=gen, dtype=F64), torch.randn(16, generator=gen, dtype=F64))
    )
    out = b.linear(h, 0.3 * torch.randn(3, 16, generator=gen, dtype=F64))
    return b.build({"y": b.sin(out[0] - out[1]) * b.sigmoid(out[2])})


BOX = (torch.full((1, 3), -1.0, dtype=F64), torch.full((1, 3), 1.0, dtype=F64))


def _samples(graph: Graph, n: int = 20000) -> list[torch.Tensor]:
    x = BOX[0] + (BOX[1] - BOX[0]) * torch.rand(n, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    return graph.forward(x, keep_all=True)  # type: ignore[return-value]


def test_boundary_neurons_are_the_mlp_outputs_that_feed_smooth_ops() -> None:
    problem = Problem.make(_surrogate_like(), BOX)
    found = boundary_neurons(problem, torch.ones(1, 1, dtype=F64))
    ops = {z: problem.graph.nodes[z].op for z in found}
    # the difference a - b (feeds sin) and the MLP's last linear layer at c only (feeds sigmoid); not a
    # and b themselves (they reach sin only through the difference), not the hidden layers (feed relu)
    assert sorted(ops.values()) == ["linear", "sub"], ops
    linear = next(z for z, op in ops.items() if op == "linear")
    assert found[linear].tolist() == [2]
    assert all(problem.graph.nodes[z].size >= int(r.max()) + 1 for z, r in found.items())


def test_tightened_intervals_are_sound_and_tighter_than_crown() -> None:
    graph = _surrogate_like()
    problem = Problem.make(graph, BOX)
    spec = torch.ones(1, 1, dtype=F64)
    found = boundary_neurons(problem, spec)
    intervals = tighten(problem, spec, None, SearchConfig(), budget_s=4.0, max_neurons=8, maximise=maximise)
    assert intervals is not None
    values = _samples(problem.graph)
    root = crown(problem.graph, BOX).intervals
    tightened = 0
    for z, rows in found.items():
        if intervals[z] is None:  # no end of this node's neurons was worth a search
            continue
        lo, hi = (t.reshape(-1)[rows] for t in intervals[z])  # type: ignore[union-attr]
        v = values[z].reshape(values[z].shape[0], -1)[:, rows]
        assert bool((v >= lo - 1e-9).all() and (v <= hi + 1e-9).all()), (z, lo, hi)
        c_lo, c_hi = (t.reshape(-1)[rows] for t in root[z])  # type: ignore[union-attr]
        tightened += int((hi < c_hi - 1e-9).sum() + (lo > c_lo + 1e-9).sum())
    assert tightened > 0


def test_search_with_tightening_is_sound() -> None:
    graph = _surrogate_like()
    y = _samples(graph)[graph.outputs[0][1]].reshape(-1)
    true_max = float(y.max())
    for thr in (true_max - 1e-3, true_max + 0.05):
        cfg = SearchConfig(timeout_s=6.0, tighten=TightenConfig(after_s=0.5, round_s=1.0))
        (r,) = maximise(graph, BOX, torch.ones(1, 1, dtype=F64), threshold=thr, config=cfg)
        assert r.upper >= true_max - 1e-9
        if r.verdict is Verdict.VERIFIED:
            assert true_max <= thr
        if r.verdict is Verdict.VIOLATED:
            assert float(graph.forward(r.witness.unsqueeze(0))["y"].reshape(-1)[0]) > thr


def test_each_search_caps_its_roots_alpha_optimisation_at_a_share_of_its_time() -> None:
    from gridverify.bab.maximise import ROOT_SHARE, _rooted
    from gridverify.bounds.alpha import AlphaConfig

    eight = Deadline.after(60.0).until(time.monotonic() + 8.0)
    capped = _rooted(SearchConfig(timeout_s=60.0), eight)
    assert capped.timeout_s == 60.0  # the search reads its deadline, not the configured duration
    assert capped.root.timeout_s is not None and 0.0 < capped.root.timeout_s <= ROOT_SHARE * 8.0
    tighter = SearchConfig(root=AlphaConfig(steps=20, timeout_s=0.5))
    assert _rooted(tighter, eight).root.timeout_s == 0.5  # a smaller cap of the caller stays
    late = _rooted(SearchConfig(), Deadline(time.monotonic() - 5.0, 1.0))  # its time already spent
    assert late.root.timeout_s == 0.0


def test_a_deadline_already_passed_ends_maximise_with_tightening_at_once() -> None:
    """Tightening rounds and the searches between them all read the one deadline: once it has passed,
    `maximise` returns the rows open (unknown), without an exception and without spending a round."""
    graph = _surrogate_like()
    true_max = float(_samples(graph)[graph.outputs[0][1]].max())
    cfg = SearchConfig(tighten=TightenConfig(after_s=0.5, round_s=1.0))
    start = time.monotonic()
    (r,) = maximise(
        graph, BOX, torch.ones(1, 1, dtype=F64), true_max + 0.05, config=cfg, deadline=Deadline.after(-1.0)
    )
    assert time.monotonic() - start < 5.0
    assert r.verdict is Verdict.UNKNOWN and r.stopped == "time" and r.upper >= true_max - 1e-9


def test_tightening_comes_first_only_when_the_boundary_intervals_keep_every_row_open() -> None:
    from gridverify.bab.tighten import _ends_that_matter, tighten_first

    graph = _surrogate_like()
    problem = Problem.make(graph, BOX)
    spec = torch.ones(1, 1, dtype=F64)
    _, root, hopeful = _ends_that_matter(problem, spec, None, boundary_neurons(problem, spec))
    sampled = float(_samples(graph)[graph.outputs[0][1]].max())
    # the bound with the boundary neurons cut to their sampled ranges still holds at every sample
    assert sampled - 1e-9 <= float(hopeful[0]) <= float(root[0, 0]) + 1e-9
    assert float(hopeful[0]) < float(root[0, 0]) - 1e-3  # this graph's boundary intervals do matter

    def first(thr: float) -> bool:
        targets = boundary_neurons(problem, spec)
        return tighten_first(problem, spec, torch.tensor([thr], dtype=F64), None, targets)

    assert first(0.5 * (float(hopeful[0]) + float(root[0, 0])))
    assert not first(sampled - 1e-3)  # no tightening proves a violated row
    assert not first(float(root[0, 0]) + 1e-3)  # CROWN alone proves it: the plain search does
    assert not tighten_first(problem, spec, torch.tensor([0.0], dtype=F64), None, {})  # nothing to tighten

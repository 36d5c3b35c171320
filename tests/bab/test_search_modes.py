"""The search uses its whole budget: split-mode switching on stalls (`_Mode`), the memory stop only when the
domain cap is full, and a verdict reached with a cap far below the domains the proof needs."""

import torch

from gridverify.bab import SearchConfig, Verdict, maximise
from gridverify.bab.search import _Mode, _stop_reason
from gridverify.deadline import Deadline
from gridverify.ir import GraphBuilder


def test_mode_switches_on_a_stall_and_back() -> None:
    mode = _Mode(by_input=False, allowed=True, window_s=1.0, gain=0.05)
    mode.observe(10.0, 0.0)
    mode.observe(9.0, 1.5)  # shrank by 10 %: keeps splitting neurons
    assert not mode.by_input and not mode.switches
    mode.observe(8.9, 3.0)  # 1 %: stalled, input splits
    assert mode.by_input and len(mode.switches) == 1
    mode.observe(8.9, 3.5)  # inside the window: no decision
    assert mode.by_input
    mode.observe(8.8, 4.5)  # stalled again: back to neurons
    assert not mode.by_input and len(mode.switches) == 2


def test_mode_stays_on_neurons_in_many_dimensions() -> None:
    mode = _Mode(by_input=False, allowed=False, window_s=1.0, gain=0.05)
    for k in range(5):
        mode.observe(1.0, float(k) * 2)
    assert not mode.by_input and not mode.switches


def test_memory_stop_only_when_full() -> None:
    deadline = Deadline(0.0, 10.0)  # instants below: seconds on the same clock
    assert _stop_reason(0, 1.0, deadline, cap=10) == "settled"
    assert _stop_reason(5, 11.0, deadline, cap=10) == "time"
    assert _stop_reason(9, 1.0, deadline, cap=10) == ""  # room for a smaller batch
    assert _stop_reason(10, 1.0, deadline, cap=10) == "memory"


def _sin_cos() -> tuple:
    b = GraphBuilder()
    x = b.input("x", (2,))
    h = b.linear(x, torch.tensor([[3.0, 0.0], [0.0, 3.0]], dtype=torch.float64))
    y = b.sum(b.sin(h) * b.cos(h), axes=(0,))  # sin(6 x1) / 2 + sin(6 x2) / 2, at most 1
    lo = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    return b.build({"y": b.reshape(y, (1,))}), (lo, -lo)


def test_input_splits_prove_and_report_memory() -> None:
    """A 2-input product of sin and cos needs a few hundred input splits (a thousand before children took
    their parent's line and boxes kept their aspect): proved with room for them; with memory for a couple
    of dozen open domains the search goes on past its first batch (smallest gaps first near the cap) and
    says that memory ended it."""
    graph, box = _sin_cos()
    spec = torch.ones(1, 1, dtype=torch.float64)
    r = maximise(graph, box, spec, threshold=1.02, config=SearchConfig(timeout_s=60.0, memory_gb=1e-3))[0]
    assert r.verdict is Verdict.VERIFIED, r.stopped
    pts = torch.rand(20000, 2, dtype=torch.float64) * 2 - 1
    assert float(graph.forward(pts)["y"].max()) <= r.upper <= 1.02
    config = SearchConfig(timeout_s=60.0, memory_gb=2e-5)
    small = maximise(graph, box, spec, threshold=1.00001, config=config)[0]
    assert small.verdict is Verdict.UNKNOWN and small.stopped == "memory"
    assert small.domains > 32  # more than one batch: it did not stop when open + batch passed the cap

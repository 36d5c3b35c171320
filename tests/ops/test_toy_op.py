"""Adding an op touches one place: a toy op defined and registered here (and removed afterwards) is bounded by
CROWN and decided by branch and bound, its facts read from its `OpDef` (kink at 0: split there)."""

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from gridverify.bab import SearchConfig, Verdict, maximise, split_points
from gridverify.bab.branching import split_point
from gridverify.bab.domains import Problem
from gridverify.bounds import crown
from gridverify.ir import Graph, GraphBuilder
from gridverify.ops import REGISTRY, OpDef, Relaxation, register

F64 = torch.float64
NAME = "toy_vee"


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    l, u = lows[0], ups[0]
    hi = 2 * torch.maximum(l.abs(), u.abs())
    return torch.where((l < 0) & (u > 0), torch.zeros_like(l), torch.minimum(2 * l.abs(), 2 * u.abs())), hi


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    """``2|x|``: exact off 0; across 0, ``s x <= 2|x|`` for ``s = 4 alpha - 2`` in [-2, 2] and the chord."""
    l, u = lows[0], ups[0]
    sign = torch.where(u <= 0, -torch.ones_like(l), torch.ones_like(l))
    straddles = (l < 0) & (u > 0)
    width = torch.where(straddles, u - l, torch.ones_like(u))
    chord = torch.where(straddles, 2 * (u + l) / width, 2 * sign)
    ub = torch.where(straddles, 2 * u - chord * u, torch.zeros_like(u))
    lw = torch.where(straddles, 4 * alpha[0] - 2, 2 * sign)
    return Relaxation((lw,), torch.zeros_like(lw), (chord,), ub)


@pytest.fixture
def toy_op() -> Iterator[OpDef]:
    op = register(
        OpDef(
            name=NAME,
            forward=lambda x: 2 * x.abs(),
            interval=_interval,
            relax=_relax,
            n_alpha=1,
            init_alpha=lambda lows, ups: torch.full_like(lows[0], 0.5).unsqueeze(0),
            value_range=(0.0, float("inf")),
            kink_at_zero=True,
        )
    )
    yield op
    del REGISTRY[NAME]
    split_points.tabulated_ops.cache_clear()  # it may have seen the toy op


def _graph() -> Graph:
    gen = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    x = b.input("x", (2,))
    h = b.apply(
        NAME,
        b.linear(x, torch.randn(6, 2, generator=gen, dtype=F64), torch.randn(6, generator=gen, dtype=F64)),
    )
    return b.build({"y": b.linear(h, torch.randn(1, 6, generator=gen, dtype=F64))})


BOX = (torch.full((1, 2), -1.0, dtype=F64), torch.full((1, 2), 1.0, dtype=F64))


def _sampled_max(graph: Graph) -> float:
    u = torch.rand(20000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return float(graph.forward(BOX[0] + (BOX[1] - BOX[0]) * u)["y"].max())


def test_a_toy_op_is_bounded_split_at_its_kink_and_decided(toy_op: OpDef) -> None:
    graph = _graph()
    best = _sampled_max(graph)
    spec = torch.ones(1, 1, dtype=F64)
    upper = float(crown(graph, BOX, spec=spec).upper[0, 0])
    assert upper >= best
    problem = Problem.make(graph, BOX)
    (z,) = problem.split_nodes  # the toy op's input: it allows splits (the default)
    lo, hi = torch.tensor([[-1.0, 0.5]], dtype=F64), torch.tensor([[2.0, 3.0]], dtype=F64)
    assert split_point(problem, z, lo, hi, tables=False).tolist() == [[0.0, 1.75]]
    config = SearchConfig(timeout_s=20, split_tables=False)
    margin = 0.05 * (upper - best) + 1e-3
    safe, unsafe = maximise(graph, BOX, torch.cat([spec, spec]), torch.tensor([best + margin, best - margin]),
                            config=config)  # fmt: skip
    assert safe.verdict is Verdict.VERIFIED and safe.upper >= best
    assert unsafe.verdict is Verdict.VIOLATED and unsafe.worst > best - margin

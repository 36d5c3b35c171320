"""The tightened intervals `verify` computes for a shipped case hold for every load of the region.

For each shipped case: the LP-tightened base over its training region (`tightened_base`, every constraint
row), then 1e5 uniform loads, the box's corners the falsifier reaches, and the falsifier's worst load per row
are evaluated in float64. Every node's value must lie in its tightened interval, and every row's value
below its certified CROWN bound on that base. case14 runs by default; the others are marked slow.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from gridverify.bab import AttackConfig, attack, maximise
from gridverify.bounds import crown
from gridverify.deadline import Deadline
from gridverify.surrogate.case import available_cases, load_case
from gridverify.verify.run import OUTPUT, VerifyConfig, prepare, tightened_base

F64 = torch.float64
SAMPLES = 100_000
CHUNK = 5_000
FAST = {"case14"}


def _cases() -> list:
    return [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in available_cases()]


def _slack(t: torch.Tensor) -> torch.Tensor:
    """Room for the float64 evaluation's own rounding of the sampled value (not for the bound's)."""
    return 1e-9 * (1.0 + t.abs())


@pytest.mark.parametrize("name", _cases())
def test_tightened_intervals_and_row_bounds_hold_on_sampled_and_attacked_loads(name: str, tmp_path) -> None:
    case = load_case(name)
    _, graph, rows = prepare(case, None)
    box = case.region.box()
    config = VerifyConfig(timeout_s=10.0 if name in FAST else 60.0, tighten_share=0.3, tighten_cache=tmp_path)
    base = tightened_base(graph, box, rows.spec, config, Deadline.after(config.timeout_s))
    assert base is not None
    bound = crown(graph, box, OUTPUT, rows.spec, base=base).upper[0]
    lo, hi = box
    m = rows.spec.shape[0]
    _, worst = attack(graph, OUTPUT, rows.spec, lo.expand(m, -1), hi.expand(m, -1), AttackConfig(steps=20))
    assert bool((worst <= bound + _slack(bound)).all()), "a falsified value above its certified bound"
    gen = torch.Generator().manual_seed(0)
    checked = [i for i, iv in enumerate(base) if iv is not None]
    assert checked, "nothing was tightened"
    for first in range(0, SAMPLES, CHUNK):
        u = torch.rand(CHUNK, lo.shape[1], generator=gen, dtype=F64)
        if first == 0:  # corners too: where relu networks reach their extremes over a box
            u = torch.cat([u, torch.randint(0, 2, (CHUNK, lo.shape[1]), generator=gen).to(F64)])
        x = lo + (hi - lo) * u
        values = graph.forward(x, keep_all=True)
        for i in checked:
            v = values[i].reshape(x.shape[0], -1)
            low, high = (t.reshape(1, -1) for t in base[i])
            assert bool((v >= low - _slack(v)).all()), f"node {i} below its tightened interval"
            assert bool((v <= high + _slack(v)).all()), f"node {i} above its tightened interval"
        out = values[graph.output_ids[OUTPUT]].reshape(x.shape[0], -1) @ rows.spec.T
        assert bool((out <= bound + _slack(out)).all()), "a sampled row value above its certified bound"


@pytest.mark.parametrize(
    ("name", "family", "which"),
    [
        ("case118", "thermal_to", [181, 11, 5]),  # thermal_to at branches 182, 12, 6
        ("case14", "p_balance", [18, 19, 24, 6]),  # buses 10 (both sides), 13 and 4
    ],
)
def test_search_bounds_hold_on_sampled_loads(name: str, family: str, which: list[int]) -> None:
    """Branch and bound as `verify` runs it (relations between neurons and bounds at cut nodes,
    `gridverify.bab.relations`; each domain's bound finished by LP over the surrogate's ReLU part,
    `gridverify.bab.lp_cut`; width branching) on case118 thermal rows whose angle difference CROWN leaves
    50x its sampled range and on case14 balance rows, where the load enters both directly and through the
    surrogate: every row's certified bound is at least its value at 1e5 uniform loads, corner loads and the
    search's own worst, and below the root's CROWN bound."""
    case = load_case(name)
    _, graph, rows = prepare(case, [family])
    box = case.region.box()
    spec = rows.block(which)
    config = VerifyConfig().search
    found = maximise(graph, box, spec, None, OUTPUT, replace(config, timeout_s=2.0 * len(which)))
    bound = torch.tensor([r.upper for r in found], dtype=F64)
    root = crown(graph, box, OUTPUT, spec).upper[0]
    assert bool((bound < root).all()), "the search did not narrow the root's bound"
    assert all(r.worst <= r.upper for r in found)
    lo, hi = box
    gen = torch.Generator().manual_seed(1)
    for first in range(0, SAMPLES, 4 * CHUNK):
        u = torch.rand(4 * CHUNK, lo.shape[1], generator=gen, dtype=F64)
        if first == 0:
            u = torch.cat([u, torch.randint(0, 2, (CHUNK, lo.shape[1]), generator=gen).to(F64)])
        y = graph.forward(lo + (hi - lo) * u)[OUTPUT] @ spec.T
        assert bool((y <= bound + _slack(y)).all()), "a sampled value above its certified bound"

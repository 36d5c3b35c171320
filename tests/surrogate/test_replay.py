"""Replay in pandapower (``runpp``, ``numba=False``): the loads and the generator set-points written into the
net. An AC-OPF solution is power-flow feasible, so its replay reproduces the compiled graph's flows; the
shipped surrogate's dispatch is not exactly feasible, and the replay reports by how much the flows differ."""

import numpy as np
import pytest
import torch

from gridverify.grid.acopf import compile_acopf
from gridverify.surrogate import load_case, replay
from gridverify.surrogate.dataset import _Solver, solve_opf
from gridverify.surrogate.model import DISPATCH, Layout


@pytest.mark.parametrize("name", ["case14", "case118"])
def test_replaying_an_opf_solution_reproduces_the_graph_s_flows(name: str) -> None:
    """Measured: flow differences 5e-8 (case14) and 8e-8 pu (case118), PYPOWER's tolerance."""
    case = load_case(name)
    load = case.region.sample(1, np.random.default_rng(1))[0]
    solution = solve_opf(_Solver.of(case.source, case.data), load)
    assert solution is not None
    pieces = np.split(solution[:-1], np.cumsum([s for _, s in Layout.of(case.data).outputs])[:-1])
    result = replay(case.data, case.net, compile_acopf(case.problem), load, dict(zip(DISPATCH, pieces)))
    assert result.converged
    assert result.model_error_pu <= 1e-9  # the graph's flow model is pandapower's
    assert result.balance_residual_pu <= 1e-5
    assert result.flow_error_pu <= 1e-6 and result.vm_error_pu <= 1e-6 and result.qg_error_pu <= 1e-5


def test_replaying_the_shipped_surrogate_reports_its_error() -> None:
    """The surrogate's own point differs from the replayed state by about its balance residual. Measured on
    20 loads: flow differences 1.1e-3 pu median (2.9e-3 max), at most 0.73x the balance residual (case14),
    1.01x on case30; graph vs pandapower at the replayed state 8e-15 pu."""
    case = load_case("case14")
    graph = compile_acopf(case.problem)
    loads = case.region.sample(4, np.random.default_rng(2))
    dispatch = case.surrogate.dispatch(torch.as_tensor(loads))
    for i, load in enumerate(loads):
        point = {k: v[i].detach().numpy() for k, v in dispatch.items()}
        result = replay(case.data, case.net, graph, load, point)
        assert result.converged and result.model_error_pu <= 1e-9
        assert result.balance_residual_pu > 0
        assert 0 < result.flow_error_pu < 10 * result.balance_residual_pu + 1e-6

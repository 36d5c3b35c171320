"""The pandapower replay on a case with every generator kind pandapower makes from MATPOWER: PGLib case5_pjm
has two units at bus 1, so ``from_mpc`` turns the second into a static generator (``sgen``) beside a ``gen``
and the slack is an ``ext_grid``. The "surrogate" here is pandapower's own power-flow solution, so the
replay must reproduce it exactly; then one unit's set-point or one rating is changed and the physical
consequences must say what pandapower's flows say."""

from __future__ import annotations

import copy
import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import torch

from gridverify.grid import build_acopf, from_matpower, from_pandapower, matpower_net, operating_point
from gridverify.grid.data import branch_flows
from gridverify.verify.replay import PHYSICAL_TOLERANCE, consequences, power_flow


class FixedDispatch:
    """A stand-in surrogate: the same dispatch (pu, rad) at every load."""

    def __init__(self, dispatch: dict[str, np.ndarray]) -> None:
        self.out = {k: torch.tensor(v, dtype=torch.float64)[None] for k, v in dispatch.items()}

    def dispatch(self, load: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.out


def _case(data, net, dispatch):
    return SimpleNamespace(data=data, net=net, problem=build_acopf(data), surrogate=FixedDispatch(dispatch))


@pytest.fixture(scope="module")
def solved(pglib_dir):
    """case5_pjm's data, net, the load vector and pandapower's own solution as a dispatch."""
    case5 = pglib_dir / "pglib_opf_case5_pjm.m"
    if not case5.is_file():
        pytest.skip(f"{case5} not at hand")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, net = from_matpower(case5), matpower_net(case5)
        work = copy.deepcopy(net)
        pp.runpp(work, numba=False, calculate_voltage_angles=True, init="dc", tolerance_mva=1e-10)
    point = operating_point(data, work)
    dispatch = {"pg_pu": point.pg_pu, "qg_pu": point.qg_pu, "vm_pu": point.vm_pu, "va_rad": point.va_rad}
    load = np.concatenate([data.loads.p_pu, data.loads.q_pu])
    return data, net, load, dispatch, branch_flows(data, work)


def test_case5_pjm_has_every_unit_kind(solved):
    data = solved[0]
    assert set(data.pandapower.gen_kinds) == {"gen", "sgen", "ext_grid"}


def test_replay_of_a_power_flow_solution_reproduces_it(solved):
    data, net, load, dispatch, _ = solved
    flow = power_flow(_case(data, net, dispatch), load)
    assert flow.converged
    state = operating_point(data, flow.net)
    np.testing.assert_allclose(state.pg_pu, dispatch["pg_pu"], atol=1e-7)  # the sgen keeps its pg ...
    np.testing.assert_allclose(state.qg_pu, dispatch["qg_pu"], atol=1e-7)  # ... and its qg
    np.testing.assert_allclose(state.vm_pu, dispatch["vm_pu"], atol=1e-8)
    for family in ("p_balance", "q_balance"):
        assert np.abs(flow.pandapower[family]).max() < 1e-7
    out = consequences(data, flow)
    (slack,) = out["slack"]
    assert slack["element"] == "gen 4 at bus 4"  # MATPOWER's 4th unit, pandapower's ext_grid
    assert slack["p_mw"] == pytest.approx(slack["p_mw_surrogate"], abs=1e-5)
    # the case file's dispatch leaves the slack (Pmax 200 MW) to cover 337.7 MW: its only exceeded limit
    (finding,) = out["findings"]
    assert (finding["what"], finding["element"], finding["unit"]) == ("p_limit", "gen 4 at bus 4", "MW")
    assert finding["pandapower"] == pytest.approx(337.74, abs=0.01) and finding["limit"] == 200.0


def test_an_unbalanced_dispatch_moves_the_slack_and_limits_show_in_mva(solved):
    data, net, load, dispatch, flows = solved
    more = {**dispatch, "pg_pu": dispatch["pg_pu"].copy()}
    more["pg_pu"][1] += 0.5  # the sgen (unit 2 at bus 1) injects 50 MW more than the solution
    s_from_mva = np.hypot(flows["p_from"], flows["q_from"]) * data.base_mva
    rate = data.branches.rate_a_pu.copy()
    rate[0] = 0.9 * s_from_mva[0] / data.base_mva  # branch 1 rated 10 % below its flow at the solution
    tight = dataclasses.replace(data, branches=dataclasses.replace(data.branches, rate_a_pu=rate))
    flow = power_flow(_case(tight, net, more), load)
    out = consequences(tight, flow)
    (slack,) = out["slack"]
    assert slack["p_mw"] == pytest.approx(slack["p_mw_surrogate"] - 50.0, abs=5.0)  # the slack backs off
    overloads = [f for f in out["findings"] if f["what"] == "overload" and "branch 1:" in f["element"]]
    assert overloads, out["findings"]
    ours = branch_flows(tight, flow.net)
    for f in overloads:
        end = "from" if "(from end)" in f["element"] else "to"
        s_mva = np.hypot(ours[f"p_{end}"][0], ours[f"q_{end}"][0]) * tight.base_mva
        assert f["pandapower"] == pytest.approx(s_mva)
        assert f["limit"] == pytest.approx(rate[0] * tight.base_mva)
        assert f["percent"] == pytest.approx(100 * s_mva / (rate[0] * tight.base_mva))
        assert f["pandapower"] > f["limit"] * (1 + PHYSICAL_TOLERANCE)
        assert f["unit"] == "MVA" and f["surrogate"] is not None


def test_fixed_static_generators_are_not_counted_twice():
    """A pandapower net's uncontrollable sgens are netted out of the case's bus demand (one at a bus with no
    load, one at a load bus): the replay of pandapower's own solution reproduces it."""
    net = pn.case9()
    pp.create_sgen(net, 7, p_mw=20.0, q_mvar=5.0)
    pp.create_sgen(net, 4, p_mw=10.0, q_mvar=0.0)
    data = from_pandapower(net, "case9 with fixed sgens")
    assert "sgen" not in data.pandapower.gen_kinds and -0.2 in data.loads.p_pu  # bus 7: demand -20 MW
    work = copy.deepcopy(net)
    pp.runpp(work, numba=False, calculate_voltage_angles=True, init="dc", tolerance_mva=1e-10)
    point = operating_point(data, work)
    dispatch = {"pg_pu": point.pg_pu, "qg_pu": point.qg_pu, "vm_pu": point.vm_pu, "va_rad": point.va_rad}
    flow = power_flow(_case(data, net, dispatch), np.concatenate([data.loads.p_pu, data.loads.q_pu]))
    np.testing.assert_allclose(operating_point(data, flow.net).pg_pu, point.pg_pu, atol=1e-8)
    assert np.abs(flow.pandapower["p_balance"]).max() < 1e-8
    assert consequences(data, flow)["findings"] == []

"""GridData: numbers read from a PGLib file by hand, the two sources agreeing where pandapower's conversion
holds, the caller's net left untouched, immutability, element ids through out-of-service and controllable
elements, and clear errors for what the MATPOWER model leaves out."""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest

from gridverify.grid.data import branch_flows, from_matpower, from_pandapower, matpower_net, operating_point
from tests.grid.cases import compiled, evaluate, run_power_flow


def test_pglib_case14_numbers_from_the_file(pglib_dir: Path) -> None:
    """Values copied from pglib_opf_case14_ieee.m, converted to per unit on 100 MVA and radians."""
    data = from_matpower(pglib_dir / "pglib_opf_case14_ieee.m")
    br, bus, gens = data.branches, data.buses, data.gens
    assert data.base_mva == 100.0 and len(data.ids.bus) == 14 and len(br.r_pu) == 20 and len(gens.bus) == 5
    assert (br.r_pu[0], br.x_pu[0], br.b_pu[0], br.rate_a_pu[0]) == (0.01938, 0.05917, 0.0528, 4.72)
    assert (br.tap[0], br.tap[7], br.shift_rad[7]) == (1.0, 0.978, 0.0)  # branch 8: 4-7, ratio 0.978
    assert data.ids.bus[br.from_bus[7]] == 4 and data.ids.bus[br.to_bus[7]] == 7
    assert br.angmin_rad[0] == pytest.approx(-np.pi / 6) and br.angmax_rad[0] == pytest.approx(np.pi / 6)
    assert bus.bs_pu[8] == 0.19 and bus.gs_pu.max() == 0.0
    assert (bus.vmin_pu[0], bus.vmax_pu[0]) == (0.94, 1.06)
    assert list(bus.ref) == [0] and list(bus.ref_va_rad) == [0.0]
    assert data.ids.bus[data.loads.bus[0]] == 2 and data.loads.p_pu[0] == pytest.approx(0.217)
    assert (gens.pmax_pu[0], gens.qmin_pu[1], gens.qmax_pu[1]) == (3.4, -0.3, 0.3)
    assert gens.cost_c1_per_pu[0] == pytest.approx(792.0951) and gens.cost_c2_per_pu2.max() == 0.0


def test_both_sources_agree_where_pandapowers_conversion_holds(pglib_dir: Path) -> None:
    """pglib case118: the ``.m`` reading and pandapower's ``from_mpc`` + ``to_ppc`` give the same data (rows
    matched by pandapower element); pandapower's net has lost the angle-difference limits."""
    path = pglib_dir / "pglib_opf_case118_ieee.m"
    direct, via_pp = from_matpower(path), from_pandapower(matpower_net(path))
    key = list(zip(via_pp.ids.branch_kinds, via_pp.ids.branch.tolist()))
    order = [key.index(k) for k in zip(direct.pandapower.branch_kinds, direct.pandapower.branch.tolist())]
    for name in ("r_pu", "x_pu", "b_pu", "g_pu", "tap", "shift_rad", "rate_a_pu"):
        np.testing.assert_allclose(getattr(via_pp.branches, name)[order], getattr(direct.branches, name),
                                   rtol=1e-12, atol=1e-14, err_msg=name)  # fmt: skip
    np.testing.assert_array_equal(via_pp.ids.bus[via_pp.branches.from_bus[order]] + 1,
                                  direct.ids.bus[direct.branches.from_bus])  # fmt: skip
    for name in ("vmin_pu", "vmax_pu", "gs_pu", "bs_pu"):
        np.testing.assert_allclose(getattr(via_pp.buses, name), getattr(direct.buses, name), err_msg=name)
    assert np.isinf(via_pp.branches.angmax_rad).all() and np.isfinite(direct.branches.angmax_rad).all()


def _frames(net: object) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in net.items() if isinstance(v, pd.DataFrame)}


def test_the_callers_net_is_not_modified() -> None:
    net = pn.case30()
    before = copy.deepcopy(net)
    from_pandapower(net)
    assert set(net.keys()) == set(before.keys())
    for name, frame in _frames(before).items():
        pd.testing.assert_frame_equal(net[name], frame, obj=name)


def test_griddata_is_immutable() -> None:
    data = from_pandapower(pn.case9())
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.base_mva = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        data.branches.rate_a_pu[0] = 0.0


def _edited_case9() -> object:
    """case9 with a line and a generator out of service, a controllable static generator with a cost, and
    a non-zero reference angle: rows must still map to the right pandapower elements."""
    net = pn.case9()
    net.line.loc[8, "in_service"] = False
    net.gen.loc[1, "in_service"] = False
    net.ext_grid.loc[0, "va_degree"] = 5.0
    sgen = pp.create_sgen(net, 4, p_mw=20.0, q_mvar=5.0, controllable=True, max_p_mw=50.0, min_p_mw=0.0,
                          max_q_mvar=10.0, min_q_mvar=-10.0)  # fmt: skip
    pp.create_poly_cost(net, sgen, "sgen", cp1_eur_per_mw=3.0)
    return net


def test_ids_follow_out_of_service_and_controllable_elements() -> None:
    net = _edited_case9()
    data = from_pandapower(net)
    assert data.ids.gen_kinds == ("ext_grid", "gen", "sgen") and list(data.ids.gen) == [0, 0, 0]
    assert len(data.branches.r_pu) == 8 and 8 not in data.ids.branch
    assert data.buses.ref_va_rad[0] == pytest.approx(np.deg2rad(5.0))
    assert data.gens.cost_c1_per_pu[2] == pytest.approx(300.0)
    run_power_flow(net)
    problem, graph = compiled(data)
    out = evaluate(graph, problem, operating_point(data, net))
    assert np.abs(out["p_balance"]).max() < 1e-6 and np.abs(out["ref_angle"]).max() < 1e-12
    assert np.abs(out["p_from"] - branch_flows(data, net)["p_from"]).max() < 1e-9


def test_merged_buses_and_a_net_without_opf_data() -> None:
    """example_simple: bus-bus switches merge buses, no costs or limits (pandapower's stand-ins for
    missing limits become +-inf); residuals and flows still match pandapower's power flow."""
    net = pn.example_simple()
    net.switch["closed"] = True
    data = from_pandapower(net)
    assert len(data.ids.bus) == len(net.bus) - 2 and np.isinf(data.buses.vmax_pu).all()
    assert np.isinf(data.gens.pmax_pu).all() and not data.gens.cost_c1_per_pu.any()
    run_power_flow(net)
    problem, graph = compiled(data)
    out = evaluate(graph, problem, operating_point(data, net))
    assert np.abs(out["p_balance"]).max() < 1e-9 and np.abs(out["q_balance"]).max() < 1e-9
    for name, want in branch_flows(data, net).items():
        assert np.abs(out[name] - want).max() < 1e-9, name


def test_what_the_matpower_model_leaves_out_is_refused() -> None:
    with pytest.raises(NotImplementedError, match="trafo3w"):
        from_pandapower(pn.example_multivoltage())
    with pytest.raises(NotImplementedError, match="1 open line switches"):
        from_pandapower(pn.example_simple())
    net = pn.case9()
    net.load["const_z_p_percent"] = 50.0
    with pytest.raises(NotImplementedError, match="voltage-dependent loads"):
        from_pandapower(net)

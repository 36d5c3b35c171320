"""The ACOPF constraint graph against independent oracles: pandapower's own power flow (balance residuals
and branch flows at ``runpp`` solutions), complex arithmetic on a two-bus case with every branch feature,
``sympy.lambdify`` of the same expressions, and sampling (CROWN bounds on a voltage box contain the sampled
constraint values). Also: readable names, kinds, and a graph size that does not grow with the grid."""

from pathlib import Path

import numpy as np
import pytest
import sympy
import torch

from gridverify.bounds import crown
from gridverify.grid.acopf import build_acopf, compile_acopf
from gridverify.grid.data import (
    Branches,
    Buses,
    ElementIds,
    Generators,
    GridData,
    Loads,
    OperatingPoint,
    branch_flows,
    operating_point,
)
from gridverify.grid.families import NAMES, Kind
from tests.grid.cases import compiled, evaluate, pandapower_case, pglib_case

PANDAPOWER_CASES = ["case9", "case14", "case30", "case57", "case118", "case300"]
TOL_PF = 1e-6  # pu; measured: balance <= 1e-10, flows <= 1e-12 (runpp tolerance_mva=1e-10)


def _check_power_flow(data: GridData, net: object) -> None:
    problem, graph = compiled(data)
    out = evaluate(graph, problem, operating_point(data, net))
    for family in ("p_balance", "q_balance", "ref_angle"):
        assert np.abs(out[family]).max() <= TOL_PF, family
    for name, want in branch_flows(data, net).items():
        assert np.abs(out[name] - want).max() <= TOL_PF, name


@pytest.mark.parametrize("case", PANDAPOWER_CASES)
def test_residuals_and_flows_at_pandapower_solution(case: str) -> None:
    _check_power_flow(*pandapower_case(case))


@pytest.mark.slow
def test_residuals_and_flows_at_pandapower_solution_with_phase_shifters() -> None:
    """case1354pegase: 1354 buses, transformers with phase shift (5-10 s)."""
    data, net = pandapower_case("case1354pegase")
    assert np.abs(data.branches.shift_rad).max() > 0
    _check_power_flow(data, net)


@pytest.mark.parametrize("case", ["case118_ieee", "case57_ieee"])
def test_residuals_and_flows_at_pandapower_solution_of_pglib_file(pglib_dir: Path, case: str) -> None:
    """Data read from the ``.m`` file with MATPOWER's semantics; pandapower solves its own conversion."""
    _check_power_flow(*pglib_case(pglib_dir / f"pglib_opf_{case}.m"))


def _a(*values: float) -> np.ndarray:
    return np.array(values)


def _two_bus(r: float, x: float, g: float, b: float, tap: float, shift: float) -> GridData:
    """Bus 1 (reference, generator, shunt gs = 0.01) -- branch 1 -- bus 2 (load 1 + 0.5j, shunt bs = 0.05)."""
    ids = ElementIds(_a(1, 2).astype(int), ("gen",), _a(1).astype(int), ("branch",), _a(1).astype(int))
    index, one, inf = _a(0).astype(int), _a(1.0), _a(np.inf)
    return GridData(
        name="two-bus",
        base_mva=100.0,
        buses=Buses(_a(0.9, 0.9), _a(1.1, 1.1), _a(0.01, 0.0), _a(0.0, 0.05), index, _a(0.0)),
        loads=Loads(index + 1, one, 0.5 * one),
        gens=Generators(index, 0 * one, 2 * one, -one, one, one, one, 0 * one),
        branches=Branches(index, index + 1, _a(r), _a(x), _a(g), _a(b), _a(tap), _a(shift), one, -inf, inf),
        ids=ids,
    )


@pytest.mark.parametrize("seed", range(4))
def test_flows_equal_complex_arithmetic_with_tap_shift_and_charging(seed: int) -> None:
    """``S_f = V_f conj(I_f)`` with MATPOWER's ``Yff, Yft, Ytf, Ytt`` (tap, phase shift, g + jb shunt)."""
    rng = np.random.default_rng(seed)
    r, x, g, b = rng.uniform(0.001, 0.1), rng.uniform(0.01, 0.3), rng.uniform(0, 0.01), rng.uniform(0, 0.2)
    tap, shift = rng.uniform(0.9, 1.1), rng.uniform(-0.5, 0.5)
    data = _two_bus(r, x, g, b, tap, shift)
    vm, va = rng.uniform(0.9, 1.1, 2), rng.uniform(-0.5, 0.5, 2)
    point = OperatingPoint(vm, va, np.array([0.3]), np.array([0.1]), np.array([1.0]), np.array([0.5]))
    problem = build_acopf(data)
    out = evaluate(compile_acopf(problem), problem, point)
    v, ys, t = vm * np.exp(1j * va), 1 / (r + 1j * x), tap * np.exp(1j * shift)
    i_f = (ys + (g + 1j * b) / 2) / tap**2 * v[0] - ys / np.conj(t) * v[1]
    i_t = -ys / t * v[0] + (ys + (g + 1j * b) / 2) * v[1]
    s_f, s_t = v[0] * np.conj(i_f), v[1] * np.conj(i_t)
    want = {"p_from": s_f.real, "q_from": s_f.imag, "p_to": s_t.real, "q_to": s_t.imag}
    for name, value in want.items():
        assert out[name][0] == pytest.approx(value, abs=1e-12), name
    s_bus = np.array([0.3 + 0.1j, -1.0 - 0.5j]) - np.array([0.01, -0.05j]) * vm**2 - np.array([s_f, s_t])
    assert out["p_balance"] == pytest.approx(s_bus.real, abs=1e-12)
    assert out["q_balance"] == pytest.approx(s_bus.imag, abs=1e-12)
    assert out["thermal_from"][0] == pytest.approx(abs(s_f) ** 2 - 1.0, abs=1e-12)


def test_names_kinds_and_elements_follow_the_case(pglib_dir: Path) -> None:
    problem, _ = compiled(pglib_case(pglib_dir / "pglib_opf_case14_ieee.m")[0])
    names = {c.name: c for c in problem.constraints}
    assert names["p_balance[bus 7]"].kind is Kind.EQUALITY
    assert names["p_balance[bus 7]"].element == ("bus", 7)
    first = names["thermal_from[branch 1: 1-2]"]
    assert (first.kind, first.element, first.family) == (Kind.INEQUALITY, ("branch", 1), "thermal_from")
    assert "angle_max[branch 20: 13-14]" in names and "pg_max[gen 5]" in names
    assert problem.families == NAMES  # every family present in a PGLib case
    assert len(problem.family("thermal_to")) == 20 and len(problem.family("vm_min")) == 14
    pp_problem, _ = compiled(pandapower_case("case14")[0])
    pp_names = {c.name for c in pp_problem.constraints}
    assert "thermal_from[trafo 0: 3-6]" in pp_names and "qg_max[ext_grid 0]" in pp_names


def test_node_count_does_not_grow_with_the_grid() -> None:
    """case14 and case300 compile to about the same graph (measured: 43 and 45 nodes)."""
    cases = ("case14", "case118", "case300")
    sizes = {case: len(compiled(pandapower_case(case)[0])[1].nodes) for case in cases}
    assert sizes["case118"] <= 1.2 * sizes["case14"], sizes
    assert sizes["case300"] <= 1.2 * sizes["case14"], sizes
    assert sizes["case14"] <= 60, sizes


def test_graph_equals_sympy_lambdify_on_random_points() -> None:
    """The compiled graph and ``sympy.lambdify`` of the same expressions agree on 64 random points."""
    data, _ = pandapower_case("case14")
    problem, graph = compiled(data)
    rng = np.random.default_rng(0)
    feeds = {n: rng.uniform(-1, 1, (64, len(s))) for n, s in problem.variables.items()}
    feeds["vm_pu"] = rng.uniform(0.8, 1.2, feeds["vm_pu"].shape)
    got = graph.forward({n: torch.as_tensor(v) for n, v in feeds.items()})
    symbols = [s for syms in problem.variables.values() for s in syms]
    columns = [c for v in feeds.values() for c in v.T]
    outputs = {**problem.quantities, **{f: [c.expr for c in problem.family(f)] for f in problem.families}}
    for name, exprs in outputs.items():
        fn = sympy.lambdify(symbols, list(exprs), "numpy")
        want = np.stack([np.broadcast_to(np.asarray(v, dtype=float), (64,)) for v in fn(*columns)], axis=1)
        np.testing.assert_allclose(got[name].numpy(), want, rtol=1e-12, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("case", ["case14", "case118"])
def test_crown_bounds_contain_sampled_constraint_values(case: str) -> None:
    """Voltages in a box around the power-flow solution (+-0.02 pu, +-0.02 rad), dispatch +-0.01 pu."""
    data, net = pandapower_case(case)
    problem, graph = compiled(data)
    centre = {k: torch.as_tensor(v)[None] for k, v in problem.inputs(operating_point(data, net)).items()}
    eps = {"vm_pu": 0.02, "va_rad": 0.02, "pg_pu": 0.01, "qg_pu": 0.01, "pd_pu": 0.0, "qd_pu": 0.0}
    box = {k: (v - eps[k], v + eps[k]) for k, v in centre.items()}
    gen = torch.Generator().manual_seed(0)
    samples = {k: lo + (hi - lo) * torch.rand(2000, lo.shape[1], generator=gen, dtype=torch.float64)
               for k, (lo, hi) in box.items()}  # fmt: skip
    samples = {k: torch.cat([v, box[k][0], box[k][1]]) for k, v in samples.items()}
    values = graph.forward(samples)
    outputs = problem.families if case == "case14" else ("p_balance", "q_balance", "thermal_from")
    for name in outputs:
        bound = crown(graph, box, output=name)
        lo, hi = values[name].amin(0), values[name].amax(0)
        assert (bound.lower[0] <= lo + 1e-9).all() and (bound.upper[0] >= hi - 1e-9).all(), name

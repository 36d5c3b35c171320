"""`compose`: one graph from the load vector to every constraint, equal (float64, <= 1e-9) to running the
torch surrogate and then the compiled constraint graph on its output; user modules with their own layout."""

import numpy as np
import pytest
import torch
from torch import nn

from gridverify.bounds import crown
from gridverify.grid.acopf import AcopfProblem, build_acopf, compile_acopf
from gridverify.specs import Region
from gridverify.surrogate import AcopfSurrogate, Layout, compose, load_case


def _reference(problem: AcopfProblem, module: nn.Module, layout: Layout, load: torch.Tensor) -> dict:
    """The surrogate in torch, then the constraint graph: what the composed graph must equal."""
    d = load.shape[1] // 2
    user_input = load[:, torch.as_tensor(layout.input_order())]
    with torch.no_grad():
        dispatch = layout.split(module(user_input))
    return compile_acopf(problem).forward({**dispatch, "pd_pu": load[:, :d], "qd_pu": load[:, d:]})


def _check(problem: AcopfProblem, module: nn.Module, layout: Layout, region: Region, n: int = 64) -> None:
    graph = compose(problem, module, layout)
    assert [name for name, _ in graph.inputs] == ["load"]
    assert [name for name, _ in graph.outputs] == [name for name, _ in compile_acopf(problem).outputs]
    load = torch.as_tensor(region.sample(n, np.random.default_rng(0)))
    composed, expected = graph.forward(load), _reference(problem, module, layout, load)
    for name, value in expected.items():
        assert composed[name].shape == value.shape
        assert (composed[name] - value).abs().max() <= 1e-9, name


def test_shipped_case14_composes_exactly() -> None:
    case = load_case("case14")
    _check(case.problem, case.surrogate, case.surrogate.layout, case.region)


def test_case118_composes_exactly() -> None:
    """A 2 x 128 surrogate on case118 (random weights unless the shipped one is there), on loads of the
    +-10% box and of a wider one."""
    case = load_case("case118")
    if (case.folder / "surrogate.pt").exists():
        model = case.surrogate
    else:
        torch.manual_seed(0)
        model = AcopfSurrogate(Layout.of(case.data), (128, 128)).eval()
    for region in (case.region, Region.scaled(case.data, 0.5, 1.5)):
        _check(case.problem, model, model.layout, region, n=16)


def test_a_plain_sequential_with_its_own_order() -> None:
    """The user's module takes (qd, pd) and returns (va, pg, vm, qg): compose permutes and slices."""
    case = load_case("case14")
    layout = Layout(
        (("qd_pu", 11), ("pd_pu", 11)), (("va_rad", 14), ("pg_pu", 5), ("vm_pu", 14), ("qg_pu", 5))
    )
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(22, 32), nn.Tanh(), nn.Linear(32, 38), nn.Sigmoid()).double().eval()
    _check(case.problem, module, layout, case.region)


def test_compose_refuses_what_does_not_fit() -> None:
    case = load_case("case14")
    module = nn.Sequential(nn.Linear(22, 38)).double().eval()
    with pytest.raises(ValueError, match="no `layout`"):
        compose(case.problem, module)
    wrong = Layout(
        (("pd_pu", 11), ("qd_pu", 11)), (("pg_pu", 5), ("qg_pu", 5), ("vm_pu", 14), ("va_rad", 13))
    )
    with pytest.raises(ValueError, match="does not fit"):
        compose(case.problem, nn.Sequential(nn.Linear(22, 37)).double().eval(), wrong)
    with pytest.raises(ValueError, match="output has shape"):
        compose(case.problem, nn.Sequential(nn.Linear(22, 30)).double().eval(), Layout.of(case.data))
    with pytest.raises(ValueError, match="eval mode"):
        compose(case.problem, module.train(), Layout.of(case.data))
    assert build_acopf(case.data).families == case.problem.families


def test_crown_bounds_of_the_composed_graph_contain_samples() -> None:
    """The composed graph is boundable as it is: CROWN over the shipped case14 region contains the values at
    500 sampled loads, for a balance, a thermal and a voltage family."""
    case = load_case("case14")
    graph = case.graph
    values = graph.forward(torch.as_tensor(case.region.sample(500, np.random.default_rng(5))))
    for family in ("p_balance", "thermal_from", "vm_max"):
        result = crown(graph, case.region.box(), output=family)
        assert (result.lower[0] <= values[family].min(0).values + 1e-12).all(), family
        assert (result.upper[0] >= values[family].max(0).values - 1e-12).all(), family

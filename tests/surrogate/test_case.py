"""Shipped cases: each folder is self-contained (no ../shared), its surrogate loads as float64 in eval mode
with the layout of its case, files stay small, and the shipped metrics hold up on fresh AC-OPF samples."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gridverify.specs import Region
from gridverify.surrogate import AcopfSurrogate, available_cases, load_case
from gridverify.surrogate.case import CASES_DIR
from gridverify.surrogate.dataset import _Solver, solve_opf

TRAINED = [name for name in available_cases() if (CASES_DIR / name / "surrogate.pt").exists()]


def test_the_four_pglib_cases_are_shipped() -> None:
    assert {"case14", "case30", "case57", "case118"} <= set(available_cases())
    assert "case14" in TRAINED


def test_unknown_case_lists_the_shipped_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shipped cases: .*case14"):
        load_case("case9999")
    with pytest.raises(ValueError, match=r"not a folder with case\.toml"):
        load_case(tmp_path)


@pytest.mark.parametrize("name", available_cases())
def test_case_folder_is_self_contained(name: str) -> None:
    case = load_case(name)
    assert case.name == name and case.folder == CASES_DIR / name
    assert case.source.parent == case.folder and "Creative Commons Attribution 4.0" in case.source.read_text()
    assert case.region == Region.parse(case.definition.region, case.data)
    assert np.all(case.region.upper - case.region.lower <= 0.2 * np.abs(case.region.center) + 1e-12)  # modest
    assert case.net is not case.net  # a fresh net each time
    assert len(case.problem.constraints) > 0


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_surrogate_loads_with_its_metrics(name: str) -> None:
    case = load_case(name)
    model = case.surrogate
    assert isinstance(model, AcopfSurrogate) and not model.training
    assert all(p.dtype == torch.float64 for p in model.state_dict().values())
    model.layout.check(case.data)
    assert (case.folder / "surrogate.pt").stat().st_size < 1_000_000
    assert case.metrics["fingerprint"] == model.fingerprint()
    for key in ("mae_pg_pu", "mae_vm_pu", "mae_va_rad", "balance_residual_mean_pu", "balance_residual_max_pu",
                "samples", "non_converged", "training_seconds"):  # fmt: skip
        assert key in case.metrics, key
    assert f"python -m gridverify.surrogate.train {name}" in (case.folder / "README.md").read_text()


def test_case14_metrics_hold_on_fresh_samples() -> None:
    """Five new loads (a seed training never used), solved by PYPOWER: the surrogate's pg and vm errors
    are of the size its metrics.json reports (at most 4x, for five samples' noise)."""
    case = load_case("case14")
    solver = _Solver.of(case.source, case.data)
    loads = case.region.sample(5, np.random.default_rng(12345))
    solutions = [solve_opf(solver, x) for x in loads]
    assert all(s is not None for s in solutions)
    pred = case.surrogate.dispatch(torch.as_tensor(loads))
    g, n = len(case.data.gens.bus), len(case.data.buses.vmin_pu)
    truth = np.array(solutions)
    mae_pg = np.abs(pred["pg_pu"].detach().numpy() - truth[:, :g]).mean()
    mae_vm = np.abs(pred["vm_pu"].detach().numpy() - truth[:, 2 * g : 2 * g + n]).mean()
    assert mae_pg <= 4 * case.metrics["mae_pg_pu"] and mae_vm <= 4 * case.metrics["mae_vm_pu"]

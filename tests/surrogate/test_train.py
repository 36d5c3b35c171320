"""Data generation and training in a tiny smoke form (case14, a handful of AC-OPF samples, a few epochs):
the whole path from ``case.toml`` to a loadable, composable surrogate, the dataset cache and both worker
modes, and the physics-informed loss. Full training is `python -m gridverify.surrogate.train`, not a test."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gridverify.cli import _parser
from gridverify.grid.acopf import compile_acopf
from gridverify.surrogate import compose, load_case
from gridverify.surrogate.cli import run_train
from gridverify.surrogate.dataset import Dataset, DatasetConfig, generate
from gridverify.surrogate.train import TrainConfig, build_model, fit, train_case
from tests.surrogate.support import tiny_toml

TINY = tiny_toml(6, 3, batch_size=4, test_fraction=0.34)


@pytest.fixture()
def tiny_case(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny14"
    folder.mkdir()
    shutil.copy(load_case("case14").source, folder)
    (folder / "case.toml").write_text(TINY)
    return folder


def test_train_case_writes_a_loadable_surrogate(tiny_case: Path, tmp_path: Path) -> None:
    config = DatasetConfig(workers=2, cache_dir=tmp_path / "cache", progress=False)
    metrics = train_case(tiny_case, config)
    assert metrics["samples"] == 6 and metrics["converged"] + metrics["non_converged"] == 6
    assert metrics["test"] == 2 and metrics["train"] == metrics["converged"] - 2
    assert metrics["opf_balance_residual_max_pu"] < 1e-5  # the labels satisfy the physics
    assert 0 <= metrics["mae_vm_pu"] < 0.2 and metrics["balance_residual_max_pu"] > 0
    case = load_case(tiny_case)
    assert case.metrics["fingerprint"] == case.surrogate.fingerprint()
    assert "python -m gridverify.surrogate.train tiny14" in (tiny_case / "README.md").read_text()
    graph = compose(case.problem, case.surrogate)
    load = torch.as_tensor(case.region.sample(3, np.random.default_rng(0)))
    assert graph.forward(load)["p_balance"].shape == (3, 14)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    again = generate(case.source, case.region, DatasetConfig(samples=6, seed=3, cache_dir=tmp_path / "cache"))
    assert np.array_equal(again.load, Dataset.read(cached[0]).load)


def test_one_worker_gives_the_pool_s_samples(tiny_case: Path) -> None:
    case = load_case(tiny_case)
    one = generate(
        case.source, case.region, DatasetConfig(samples=3, workers=1, cache_dir=None, progress=False)
    )
    two = generate(
        case.source, case.region, DatasetConfig(samples=3, workers=2, cache_dir=None, progress=False)
    )
    assert np.array_equal(one.load, two.load) and np.allclose(one.pg_pu, two.pg_pu, atol=1e-9)
    assert np.all(case.region.contains(one.load))
    assert one.cost.min() > 2000  # case14's optimum is 2178 $/h at nominal load; +-5% keeps it near


def test_physics_loss_trains(tiny_case: Path) -> None:
    case = load_case(tiny_case)
    data = generate(
        case.source, case.region, DatasetConfig(samples=4, workers=1, cache_dir=None, progress=False)
    )
    config = TrainConfig(hidden=(8,), epochs=2, batch_size=4, physics_weight=1.0)
    model = build_model(case.data, data, case.region.center, case.region.radius, config)
    before = model.head.weight.detach().clone()
    history = fit(model, data, config, compile_acopf(case.problem))
    assert len(history) == 2 and all(np.isfinite(history)) and not model.training
    assert not torch.equal(before, model.head.weight)


def test_train_subcommand_parses_and_reports_a_bad_case(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser("train")
    args = parser.parse_args(["train", "case14", "--workers", "1", "--no-cache"])
    assert args.case == "case14" and args.workers == 1 and args.no_cache
    assert run_train(parser.parse_args(["train", "no_such_case"])) == 2
    assert "shipped cases: " in capsys.readouterr().err


@pytest.mark.slow
def test_regenerating_case14_reproduces_its_metrics(tmp_path: Path) -> None:
    """The README's command on a copy of cases/case14 (2000 AC-OPF solves, ~6-12 min on 2 cores unless
    ~/.cache/gridverify holds the dataset): the same data (seeded) and, on CPU, the same weights."""
    shipped = load_case("case14")
    folder = tmp_path / "case14"
    shutil.copytree(shipped.folder, folder)
    metrics = train_case(folder, DatasetConfig(progress=False))
    for key in ("mae_pg_pu", "mae_vm_pu", "mae_va_rad", "balance_residual_mean_pu"):
        assert metrics[key] == pytest.approx(shipped.metrics[key], rel=0.2), key
    assert metrics["non_converged"] == shipped.metrics["non_converged"]

"""`gridverify train GRID.m|GRID.json`: a grid file alone becomes a case folder (case.toml + a copy of the
grid) with a trained surrogate that `load_case` and `gridverify verify FOLDER` use; a rerun with the same
options resumes from the label cache, other options are refused with one line (exit 2). Tiny sizes: a
handful of IPOPT labels and a few epochs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandapower
import pandapower.networks as pn
import pytest

from gridverify.cli import main
from gridverify.surrogate import load_case
from gridverify.surrogate.case import CaseDefinition
from gridverify.surrogate.dataset import Dataset
from gridverify.surrogate.train import parse_hidden

REPO = Path(__file__).resolve().parents[1]
CASE14 = load_case("case14").source  # the shipped PGLib case14 file


def _train(grid: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["train", str(grid), "--out", str(out), "--cache-dir", str(cache), "--workers", "1",
                 "--samples", "12", "--hidden", "8x8", "--epochs", "2", *extra])  # fmt: skip


def test_a_matpower_file_alone_gives_a_verifiable_case_folder(tmp_path: Path) -> None:
    out, cache = tmp_path / "c14", tmp_path / "cache"
    assert _train(CASE14, out, cache, "--region", "+-5%", "--seed", "4") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["case.toml", CASE14.name, "surrogate.pt", "metrics.json", "README.md"]
    )
    case = load_case(out)
    d = case.definition
    assert (d.region, d.seed, d.architecture["hidden"], d.data) == (
        "+-5%",
        4,
        [8, 8],
        {"samples": 12, "labeller": "ipopt"},
    )
    assert case.metrics["samples"] == 12 and case.metrics["labeller"] == "ipopt"
    assert case.metrics["opf_balance_residual_max_pu"] < 1e-6  # IPOPT's labels satisfy the physics
    assert case.metrics["fingerprint"] == case.surrogate.fingerprint()
    assert "IPOPT" in (out / "README.md").read_text()
    [cached] = cache.glob("*.npz")
    labels = Dataset.read(cached)
    assert np.all(case.region.contains(labels.load)) and labels.cost.min() > 2000
    # the same command again: the folder and the labels are reused (the cache file is not rewritten)
    stamp = cached.stat().st_mtime_ns
    assert _train(CASE14, out, cache, "--region", "+-5%", "--seed", "4") == 0
    assert cached.stat().st_mtime_ns == stamp and len(list(cache.glob("*.npz"))) == 1
    # gridverify verify FOLDER, a short budget, in its own process as a user runs it
    report = tmp_path / "report"
    run = "from gridverify.cli import main; raise SystemExit(main())"
    verify = [sys.executable, "-c", run, "verify", str(out), "--timeout", "15", "--out", str(report),
              "--quiet", "--no-replay"]  # fmt: skip
    done = subprocess.run(verify, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1, 3), done.stderr
    assert (report / "certificate.json").is_file()


def test_a_pandapower_json_grid_is_labelled_by_ipopt(tmp_path: Path) -> None:
    grid = tmp_path / "case9.json"
    pandapower.to_json(pn.case9(), str(grid))
    out = tmp_path / "case9"
    assert _train(grid, out, tmp_path / "cache") == 0
    case = load_case(out)
    assert case.data.name == "case9" and len(case.data.loads.bus) == 3
    assert case.metrics["converged"] == 12 and case.metrics["opf_balance_residual_max_pu"] < 1e-6


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--samples", "30"], "holds other settings"),
        (["--hidden", "8y"], "--hidden '8y' not understood"),
        (["--region", "+-ten%"], "region '+-ten%' not understood"),
    ],
)
def test_other_options_for_an_existing_folder_or_bad_ones_are_one_line(
    args: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c14"
    out.mkdir()
    (out / CASE14.name).write_bytes(CASE14.read_bytes())
    definition = CaseDefinition("pglib_opf_case14_ieee", CASE14.name, "+-10%", 0, {"hidden": [8, 8]},
                                {"samples": 12, "labeller": "ipopt"}, {"epochs": 2})  # fmt: skip
    (out / "case.toml").write_text(definition.to_toml("hand-made"))
    before = sorted(p.name for p in out.iterdir())
    assert _train(CASE14, out, tmp_path / "cache", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridverify train: ") and "\n" not in err and problem in err, err
    assert sorted(p.name for p in out.iterdir()) == before


def test_grid_options_are_refused_for_a_case_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "case14", "--samples", "10", "--no-cache"]) == 2
    assert "--samples: for a grid file only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"solver": "ipopt"}, "unknown [data] settings ['solver']"),
        ({"labeller": "knitro"}, "unknown AC-OPF labeller"),
    ],
)
def test_a_bad_data_section_is_one_line(
    data: dict[str, str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c14"
    out.mkdir()
    (out / CASE14.name).write_bytes(CASE14.read_bytes())
    definition = CaseDefinition("c14", CASE14.name, "+-10%", 0, {"hidden": [8]}, {"samples": 12, **data}, {})
    (out / "case.toml").write_text(definition.to_toml())
    assert main(["train", str(out), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridverify train: ") and "\n" not in err and problem in err, err


def test_case_toml_round_trip_and_hidden_widths(tmp_path: Path) -> None:
    definition = CaseDefinition("x", "x.m", "0.9:1.1", 7, {"hidden": [16, 4], "activation": "relu"},
                                {"samples": 5, "labeller": "runopf"}, {"learning_rate": 0.003})  # fmt: skip
    (tmp_path / "case.toml").write_text(definition.to_toml("a\nb"))
    assert CaseDefinition.read(tmp_path / "case.toml") == definition
    assert parse_hidden("128x64") == (128, 64) and parse_hidden("32") == (32,)
    with pytest.raises(ValueError, match="not understood"):
        parse_hidden("0x3")


def test_stability_option_reaches_case_toml_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "c14"
    assert _train(CASE14, out, tmp_path / "cache", "--stability", "0.01") == 0
    assert CaseDefinition.read(out / "case.toml").training["stability_weight"] == 0.01
    metrics = load_case(out).metrics
    assert len(metrics["unstable_relus"]) == 2 and all(0 <= n <= 8 for n in metrics["unstable_relus"])
    assert _train(CASE14, tmp_path / "bad", tmp_path / "cache", "--stability", "-1") == 2
    assert "--stability >= 0" in capsys.readouterr().err

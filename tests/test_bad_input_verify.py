"""`gridverify verify` on bad input: every class of malformed file or option ends with exit code 2 and one
line on stderr that names the file (or option) and the problem, before any work, with no traceback and no
output folder left behind. Grid oddities that MATPOWER defines (``rate_a = 0``, several generators on one
bus) are handled, not refused."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gridverify.cli import main
from gridverify.grid import build_acopf, compile_acopf, from_matpower
from gridverify.surrogate.case import load_case

CASE14 = load_case("case14")
SURROGATE = CASE14.folder / "surrogate.pt"


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture, *needles: str) -> str:
    """Run ``gridverify verify`` in-process; assert exit 2, one stderr line holding every needle, no
    traceback, nothing written under ``out``."""
    code = main(["verify", *argv, "--out", str(out), "--timeout", "5", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("gridverify verify: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.exists(), f"{out} was created"
    return err


# -- grid files -------------------------------------------------------------------------------------------
def _branch_edit(text: str, row: int, edits: dict[int, str]) -> str:
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("mpc.branch")) + 1
    parts = lines[start + row].strip().rstrip(";").split()
    for col, value in edits.items():
        parts[col] = value
    lines[start + row] = "\t" + "\t ".join(parts) + ";"
    return "\n".join(lines)


def _duplicate_generator(text: str) -> str:
    """A second, identical generator (and cost row) on bus 2."""
    lines = text.split("\n")
    for table in ("mpc.gen ", "mpc.gencost"):
        at = next(i for i, line in enumerate(lines) if line.startswith(table)) + 2
        lines.insert(at + 1, lines[at])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """case14 variants, each broken (or odd) in one way; pglib case14 branch 1 is 1-2, branch 14 is 7-8."""
    folder = tmp_path_factory.mktemp("grids")
    text = CASE14.source.read_text()
    variants = {
        "truncated": text[:1500],
        "empty": "",
        "negative_rate": _branch_edit(text, 0, {5: "-472"}),
        "zero_rate": _branch_edit(text, 0, {5: "0", 6: "0", 7: "0"}),
        "zero_impedance": _branch_edit(text, 6, {2: "0.0", 3: "0.0"}),
        "island": _branch_edit(text, 13, {10: "0"}),
        "no_slack": text.replace("\t1\t 3\t 0.0", "\t1\t 2\t 0.0", 1),
        "two_gens_one_bus": _duplicate_generator(text),
    }
    paths = {}
    for name, body in variants.items():
        paths[name] = folder / f"{name}.m"
        paths[name].write_text(body)
    for name, body in {"not_json": "not json", "other_json": '{"bad": 1}', "empty_json": ""}.items():
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(body)
    return paths


@pytest.mark.parametrize(
    ("grid", "problem"),
    [
        ("truncated", "not a readable MATPOWER case"),
        ("empty", "not a readable MATPOWER case (empty file)"),
        ("negative_rate", "branch 1: negative rate_a"),
        ("zero_impedance", "branch 7: zero impedance"),
        ("island", "bus 8: islanded"),
        ("no_slack", "no reference (slack) bus"),
        ("not_json", "not a pandapower net"),
        ("other_json", "not a pandapower net"),
        ("empty_json", "not a pandapower net"),
    ],
)
def test_a_broken_grid_file_is_named_and_not_blamed_on_the_surrogate(grid, problem, grids, tmp_path, capsys):
    err = _refused([str(grids[grid]), "--surrogate", str(SURROGATE)], tmp_path / "out", capsys, problem)
    assert str(grids[grid]) in err and "surrogate" not in err


def _no_slack(net: object) -> None:
    net.ext_grid.drop(net.ext_grid.index, inplace=True)


def _zero_line(net: object) -> None:
    net.line.loc[0, ["r_ohm_per_km", "x_ohm_per_km"]] = 0.0


def _negative_rating(net: object) -> None:
    net.line.loc[0, "max_i_ka"] = -1.0


def _island(net: object) -> None:
    net.trafo.loc[(net.trafo.hv_bus == 6) & (net.trafo.lv_bus == 7), "in_service"] = False  # bus 7 alone


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_island, "bus 7: islanded"),
        (_no_slack, "No reference bus"),
        (_zero_line, "branch 0: zero impedance"),
        (_negative_rating, "branch 0: negative rate_a"),
    ],
)
def test_a_pandapower_net_outside_the_model_is_refused(edit, problem, tmp_path, capsys):
    import pandapower as pp
    import pandapower.networks as pn

    net = pn.case14()
    edit(net)
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    _refused([str(path), "--surrogate", str(SURROGATE)], tmp_path / "out", capsys, str(path), problem)


def test_rate_a_zero_means_unlimited(grids):
    """MATPOWER: ``rate_a = 0`` is no limit, so branch 1 has no thermal rows (19 of 20 branches do)."""
    data = from_matpower(grids["zero_rate"])
    assert data.branches.rate_a_pu[0] == float("inf")
    families = build_acopf(data).families
    assert "thermal_from" in families
    assert (
        len(build_acopf(data).family("thermal_from"))
        == len(build_acopf(CASE14.data).family("thermal_from")) - 1
    )


def test_two_generators_on_one_bus_add_up(grids):
    """Splitting bus 2's unit into two (0.3 : 0.7) leaves every balance residual as it was."""
    one, two = CASE14.data, from_matpower(grids["two_gens_one_bus"])
    assert len(two.gens.bus) == len(one.gens.bus) + 1
    g1, g2 = compile_acopf(build_acopf(one)), compile_acopf(build_acopf(two))
    gen = torch.Generator().manual_seed(0)
    n = len(one.buses.vmin_pu)
    pg, qg = (torch.rand(1, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    state = {
        "vm_pu": 1 + 0.05 * torch.rand(1, n, generator=gen, dtype=torch.float64),
        "va_rad": 0.1 * torch.rand(1, n, generator=gen, dtype=torch.float64),
        "pd_pu": torch.tensor(one.loads.p_pu)[None],
        "qd_pu": torch.tensor(one.loads.q_pu)[None],
    }

    def split(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], 0.7 * x[:, 1:2], 0.3 * x[:, 1:2], x[:, 2:]], 1)

    a = g1.forward({**state, "pg_pu": pg, "qg_pu": qg})
    b = g2.forward({**state, "pg_pu": split(pg), "qg_pu": split(qg)})
    for family in ("p_balance", "q_balance"):
        assert torch.allclose(a[family], b[family], atol=1e-12)


# -- surrogate files --------------------------------------------------------------------------------------
def _saved() -> dict:
    return torch.load(SURROGATE, weights_only=True)


def _with(name: str, change: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    saved = _saved()
    state = dict(saved["state_dict"])
    state[name] = change(state[name].clone())
    return {**saved, "state_dict": state}


def _nan(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[0] = float("nan")
    return t


def _zero(t: torch.Tensor) -> torch.Tensor:
    t[2] = 0.0
    return t


@pytest.fixture(scope="module")
def surrogates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("surrogates")
    raw = SURROGATE.read_bytes()
    files = {"text": b"hello, not weights\n", "truncated": raw[:500], "empty": b""}
    files["refused_pickle"] = pickle.dumps(object, protocol=4)  # a class: torch's weights-only loader refuses
    paths = {}
    for name, body in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(body)
    saved = {
        "a_list": [1, 2],
        "no_state": {"config": _saved()["config"], "state_dict": {}},
        "nan_weight": _with("head.weight", _nan),
        "inf_bias": _with("body.0.bias", lambda t: t.fill_(float("inf"))),
        "zero_width": _with("radius", _zero),
    }
    for name, obj in saved.items():
        paths[name] = folder / f"{name}.pt"
        torch.save(obj, paths[name])
    return paths


@pytest.mark.parametrize(
    ("surrogate", "problem"),
    [
        ("text", "not a torch weights file"),
        ("truncated", "not a torch weights file, or a truncated one"),
        ("empty", "empty file"),
        ("refused_pickle", "not a torch weights file"),
        ("a_list", "not a surrogate file"),
        ("no_state", "not a usable surrogate"),
        ("nan_weight", "non-finite (NaN or inf) values in head.weight"),
        ("inf_bias", "non-finite (NaN or inf) values in body.0.bias"),
        ("zero_width", "zero-width input normalisation"),
    ],
)
def test_a_broken_surrogate_is_named(surrogate, problem, surrogates, tmp_path, capsys):
    argv = [str(CASE14.source), "--surrogate", str(surrogates[surrogate])]
    _refused(argv, tmp_path / "out", capsys, str(surrogates[surrogate]), problem)
    _refused(["case14", "--surrogate", str(surrogates[surrogate])], tmp_path / "out", capsys, problem)


def test_a_surrogate_of_another_grid_is_named(grids, tmp_path, capsys):
    argv = [str(grids["two_gens_one_bus"]), "--surrogate", str(SURROGATE)]
    _refused(argv, tmp_path / "out", capsys, str(SURROGATE), "layout does not fit", "pg_pu: 5 (case: 6)")


# -- case folders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace('region = "', 'region = "+-abc', 1), "not understood"),
        (lambda t: t + "\n[[[broken\n", "not valid TOML"),
        (lambda t: t.replace("seed = ", 'seed = "x" #', 1), "wrong type"),
    ],
)
def test_a_broken_case_toml_is_named(edit, problem, tmp_path, capsys):
    folder = tmp_path / "case"
    folder.mkdir()
    for name in ("case.toml", CASE14.definition.source, "surrogate.pt"):
        (folder / name).write_bytes((CASE14.folder / name).read_bytes())
    toml = folder / "case.toml"
    toml.write_text(edit(toml.read_text()))
    _refused([str(folder)], tmp_path / "out", capsys, str(toml), problem)


# -- options ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--timeout", "inf"], "--timeout must be > 0 and finite"),
        (["--timeout", "nan"], "--timeout must be > 0 and finite"),
        (["--timeout", "-1"], "--timeout must be > 0 and finite"),
        (["--tolerance", "nan"], "--tolerance must be >= 0"),
        (["--device", "meta"], "--device 'meta' is not available"),
        (["--device", "nodevice"], "--device 'nodevice' is not available"),
        (["--region", "+-ten%"], "--region '+-ten%'"),
    ],
)
def test_a_bad_option_is_named_and_leaves_no_folder(options, problem, tmp_path, capsys):
    argv = ["case14", *options]
    code = main(["verify", *argv, "--out", str(tmp_path / "a" / "b"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and problem in err and "\n" not in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_out_onto_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    for out in (blocker, blocker / "sub"):
        assert main(["verify", "case14", "--out", str(out), "--timeout", "inf"]) == 2
        err = capsys.readouterr().err.strip()
        assert str(out) in err and "is a file" in err and "\n" not in err, err  # --out is checked first
    assert blocker.read_text() == "keep me"


def test_nan_bounds_are_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    """Whatever slips past the checks: a run whose bounds come out NaN writes no certificate or report."""
    import math

    import gridverify.verify.cli as verify_cli
    from gridverify.specs.certificate import Certificate, ConstraintRecord

    record = ConstraintRecord("vm_max[bus 1]", "vm_max", "inequality", ("bus", 1), "pu", 1e-4, "unknown",
                              math.nan, -math.inf, None, 0.1, 1)  # fmt: skip
    cert = Certificate("case14", "x", {}, {}, (record,), 0.1, "now", "0")
    monkeypatch.setattr(verify_cli, "verify", lambda *args, **kwargs: cert)
    out = tmp_path / "out"
    assert main(["verify", "case14", "--out", str(out), "--timeout", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("verifying case14") and len(err) == 2 and "Traceback" not in err[1], err
    assert "case case14: 1 constraint(s) have NaN bounds (e.g. vm_max[bus 1])" in err[1], err
    assert not out.exists()

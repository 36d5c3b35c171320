"""`gridverify verify` / `gridverify report`: a full run on case14, and bad input rejected before any work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from gridverify.cli import main
from gridverify.surrogate.case import load_case
from gridverify.verify import Certificate, VerifyConfig


def test_verify_writes_certificate_report_and_figures(tmp_path, capsys):
    out = tmp_path / "case14"
    code = main(["verify", "case14", "--constraints", "thermal_to", "q_balance", "--timeout", "12",
                 "--out", str(out), "--quiet"])  # fmt: skip
    text = capsys.readouterr().out
    cert = Certificate.load(out / "certificate.json")
    # the exit code follows the physical limits (here thermal); the balance residuals count with --strict
    physical = [r.verdict for r in cert.records if r.family == "thermal_to"]
    assert code == (1 if "violated" in physical else 3 if "unknown" in physical else 0)
    assert set(cert.families) == {"thermal_to", "q_balance"}
    q = [r for r in cert.records if r.family == "q_balance"]
    assert all(r.tolerance == 0.01 for r in q)  # the balance families' default tolerance
    assert "thermal_to" in text and "constraints in" in text
    report = (out / "report.md").read_text()
    assert "## Summary per constraint family" in report and "| thermal_to |" in report
    for fig in ("intervals_bus.png", "intervals_branch.png", "grid.png"):
        assert (out / fig).stat().st_size > 10_000, fig
    (out / "report.md").unlink()
    assert main(["report", str(out / "certificate.json")]) == 0
    assert (out / "report.md").read_text() == report


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["verify", "case9999"], "no case 'case9999'"),
        (["verify", "case14", "--region", "+-ten%"], "--region '+-ten%'"),
        (["verify", "case14", "--region", "1.2:0.8"], "lo > hi"),
        (["verify", "case14", "--timeout", "0"], "--timeout must be > 0"),
        (["verify", "case14", "--device", "nodevice"], "--device 'nodevice'"),
        (["verify", "case14", "--memory-gb", "0"], "--memory-gb must be a positive number"),
    ],
)
def test_bad_input_is_named_and_exits_2(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "certificate.json").exists()


def test_missing_surrogate_and_unwritable_output(tmp_path, capsys):
    folder = tmp_path / "nosurrogate"
    shutil.copytree(load_case("case14").folder, folder, ignore=shutil.ignore_patterns("surrogate.pt"))
    assert main(["verify", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert "surrogate" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["verify", "case14", "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_region_outside_training_range_warns(tmp_path, capsys):
    code = main(["verify", "case14", "--region", "+-30%", "--constraints", "vm_max", "--timeout", "3",
                 "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 0  # voltages are squashed into their limits: proved whatever the loads
    assert "training region" in capsys.readouterr().err
    assert json.loads((tmp_path / "certificate.json").read_text())["region"]["label"] == "+-30%"


def test_report_of_a_broken_certificate_is_refused(tmp_path, capsys):
    (tmp_path / "certificate.json").write_text('{"schema": "gridverify.certificate/1", "complete": false}')
    assert main(["report", str(tmp_path / "certificate.json")]) == 2
    assert "incomplete" in capsys.readouterr().err


def test_light_commands_do_not_import_pandapower():
    """A VNN-COMP instance pays process start each time: `gridverify vnnlib` must not import pandapower."""
    code = (
        "import sys; from gridverify.cli import _command, _parser; "
        "_parser(_command(['--threads', '1', 'vnnlib', 'm.onnx', 'p.vnnlib'])); "
        "print('pandapower' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_command_is_listed_in_help(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out
    assert all(c in listed for c in ("verify", "report", "train", "study", "vnnlib", "demo"))


def test_family_tolerances_set_each_family_s_threshold(tmp_path):
    out = tmp_path / "tol"
    argv = ["verify", "case14", "--constraints", "p_balance", "vm_max", "--family-tolerance", "p_balance=5"]
    code = main([*argv, "--timeout", "6", "--out", str(out), "--quiet", "--no-replay"])
    cert = Certificate.load(out / "certificate.json")
    assert {r.tolerance for r in cert.family("p_balance")} == {5.0}
    assert {r.tolerance for r in cert.family("vm_max")} == {1e-4}
    # no sampled or attacked residual reaches 5 pu: the screen's samples cannot violate it
    assert all(r.verdict != "violated" for r in cert.records) and code in (0, 3)
    assert cert.settings["tolerances"] == {"p_balance": 5.0, "q_balance": 0.01}
    search = VerifyConfig().search  # the LP finish's settings are on record too
    assert (cert.settings["lp_share"], cert.settings["lp_affine"]) == (search.lp_cut, search.lp_affine)
    assert (cert.settings["lp_patterns"], cert.settings["lp_threads"]) == (
        search.lp_patterns,
        search.lp_threads,
    )


@pytest.mark.parametrize(
    ("item", "message"),
    [("p_balance", "FAMILY=NUMBER"), ("nofam=1", "unknown families"), ("vm_max=-1", ">= 0")],
)
def test_bad_family_tolerances_are_refused(item, message, tmp_path, capsys):
    assert main(["verify", "case14", "--family-tolerance", item, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_strict_exit_code_counts_balance_residuals(tmp_path):
    """case14's surrogate misses reactive balance by more than 0.01 pu somewhere in its region: the
    default exit code (thermal only) is not 1, --strict makes it 1."""
    argv = ["verify", "case14", "--constraints", "thermal_to", "q_balance", "--timeout", "8", "--quiet",
            "--no-replay"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) != 1
    assert main([*argv, "--out", str(tmp_path / "b"), "--strict"]) == 1


def test_memory_budget_is_recorded_and_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    argv = ["verify", "case14", "--constraints", "vm_max", "--timeout", "4", "--quiet", "--no-replay"]
    assert main([*argv, "--memory-gb", "0.5", "--out", str(tmp_path / "a")]) == 0
    assert Certificate.load(tmp_path / "a" / "certificate.json").settings["memory_gb"] == 0.5

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr("gridverify.verify.cli.verify", no_memory)
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "out of memory within --memory-gb" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "certificate.json").exists()

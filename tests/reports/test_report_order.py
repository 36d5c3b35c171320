"""report.md reads in an engineer's order: physical violations confirmed by pandapower's power flow first
(a confirmed overload with MVA and % of rate_a), then limit rows, then the surrogate's self-consistency with
the certified interval of its balance residuals as the headline. Hand-made certificate, numbers inline."""

from __future__ import annotations

import os

import pytest

from gridverify.reports.report import (
    LOCK,
    ReportLockedError,
    physical_findings,
    render_markdown,
    report_lock,
    write_report,
)
from gridverify.verify import Certificate, ConstraintRecord

WITNESS = (0.2, 0.1)
OVERLOAD = {  # case30's overload as the issue reports it: 143.5 MVA on branch 1 (1-2), rate_a 138 MVA
    "what": "overload", "element": "branch 1: 1-2 (from end)", "unit": "MVA", "pandapower": 143.5,
    "limit": 138.0, "surrogate": 137.2, "percent": 100 * 143.5 / 138.0,
}  # fmt: skip
Q_LIMIT = {"what": "q_limit", "element": "gen 2 at bus 2", "unit": "MVAr", "pandapower": 37.3, "limit": 30.0,
           "surrogate": 30.0, "percent": None}  # fmt: skip
SLACK = {"element": "gen 1 at bus 1", "p_mw": 245.9, "p_mw_surrogate": 264.1, "q_mvar": -6.1,
         "q_mvar_surrogate": 0.0}  # fmt: skip


def _record(name: str, family: str, kind: str, worst: float, bound: float, replay=None) -> ConstraintRecord:
    element = ("branch", 1) if family.startswith("thermal") else ("bus", 1)
    return ConstraintRecord(
        name=name, family=family, kind=kind, element=element, unit="pu^2" if kind == "inequality" else "pu",
        tolerance=1e-4, verdict="violated", bound=bound, worst=worst, witness=WITNESS, seconds=1.0, domains=3,
        replay=replay,
    )  # fmt: skip


def _replay(pandapower: float, findings: list) -> dict:
    return {"converged": True, "gridverify": 0.1, "pandapower": pandapower, "confirmed": pandapower > 1e-4,
            "results": {"s_from_mva": 143.5, "s_to_mva": 140.1, "rate_a_mva": 138.0},
            "consequences": {"slack": [SLACK], "findings": findings}}  # fmt: skip


@pytest.fixture
def cert() -> Certificate:
    thermal = _replay(0.1465, [OVERLOAD, Q_LIMIT])
    records = (
        # the largest violations are balance residuals: pandapower balances by construction (never confirms)
        _record("p_balance[bus 1]", "p_balance", "equality", 0.134, 0.827, _replay(1e-15, [Q_LIMIT])),
        _record("q_balance[bus 2]", "q_balance", "equality", 0.126, 0.930, _replay(2e-15, [Q_LIMIT])),
        _record("thermal_from[branch 1: 1-2]", "thermal_from", "inequality", 0.0676, 1.58, thermal),
    )
    return Certificate(case="case30", surrogate="ab" * 32, region={"label": "+-10%"}, settings={},
                       records=records, seconds=2.0, created="2026-12-06T00:00:00+00:00", gridverify="0.1.0",
                       input_names=("pd_pu[bus 2]", "qd_pu[bus 2]"))  # fmt: skip


def test_confirmed_overload_is_the_first_finding(cert):
    text = render_markdown(cert)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[:3] == [
        "## Physical violations after pandapower's power flow",
        "## Limit constraints violated by the surrogate's output",
        "## Self-consistency of the surrogate: power balance",
    ]
    physical = text.split("## Physical violations")[1].split("\n## ")[0]
    rows = [line for line in physical.splitlines() if line.startswith("| ") and "---" not in line]
    first = "| overload | branch 1: 1-2 (from end) | 143.5 MVA | 138 MVA | 104.0 % | 137.2 MVA"
    assert rows[1].startswith(first)
    assert rows[2].startswith("| Q limit | gen 2 at bus 2 | 37.3 MVAr | 30 MVAr |")
    assert "| p_balance[bus 1] | gen 1 at bus 1 | 245.9 MW | 264.1 MW |" in physical  # the slack table
    # pandapower's loading_percent (its own rating) is not shown; the case's rate_a is
    limits = text.split("## Limit constraints")[1].split("\n## ")[0]
    assert "from 143.5 MVA (104.0 %), to 140.1 MVA (101.5 %) of rate_a 138.0 MVA" in limits
    assert "loading_percent" not in text


def test_balance_interval_is_the_headline_of_its_section(cert):
    text = render_markdown(cert)
    headline = "the dispatch is within 0.134-0.93 pu of a power-flow solution everywhere in the region"
    consistency = text.split("## Self-consistency")[1].split("\n## ")[0]
    assert f"**T{headline[1:]}" in consistency
    assert f"- self-consistency: {headline}" in text.split("\n## ")[0]  # and in the header


def test_findings_keep_the_worst_per_element(cert):
    findings = physical_findings(cert)
    assert [(f["what"], f["witness_of"]) for f in findings] == [
        ("overload", "thermal_from[branch 1: 1-2]"),
        ("q_limit", "p_balance[bus 1]"),
    ]


def test_folder_holds_one_run(cert, tmp_path):
    stale = tmp_path / "grid.png"  # drawn by an earlier run that had the case; this one has not
    stale.write_bytes(b"old")
    write_report(cert, tmp_path)
    assert not stale.exists()
    assert (tmp_path / "intervals_branch.png").is_file() and not (tmp_path / LOCK).exists()


def test_re_rendering_without_the_case_keeps_this_run_s_grid(cert, tmp_path):
    cert.save(tmp_path / "certificate.json")
    grid = tmp_path / "grid.png"  # drawn by `gridverify verify` (with the case) after the certificate
    grid.write_bytes(b"png")
    os.utime(grid, (grid.stat().st_atime, (tmp_path / "certificate.json").stat().st_mtime + 1))
    write_report(cert, tmp_path)  # `gridverify report` of a case that is not shipped: no case at hand
    assert grid.is_file() and "![grid.png](grid.png)" in (tmp_path / "report.md").read_text()


def test_a_live_writer_locks_the_folder_and_a_dead_one_does_not(cert, tmp_path):
    (tmp_path / LOCK).write_text(str(os.getppid()))  # a live process holds the folder
    with pytest.raises(ReportLockedError, match="is writing a report there"):
        write_report(cert, tmp_path)
    assert not (tmp_path / "report.md").exists()  # refused before writing anything
    (tmp_path / LOCK).write_text("999999999")  # a lock left by a process that is gone
    with report_lock(tmp_path):
        assert (tmp_path / LOCK).read_text() == str(os.getpid())
        with report_lock(tmp_path):  # reentered by its holder (a run holding it around cert and report)
            pass
        assert (tmp_path / LOCK).exists()
    assert not (tmp_path / LOCK).exists()


def test_figures_past_the_deadline_are_left_out_and_the_report_says_how_to_draw_them(cert, tmp_path):
    from gridverify.deadline import Deadline

    path = write_report(cert, tmp_path, deadline=Deadline.after(-1.0))
    assert not list(tmp_path.glob("*.png"))
    assert "Not drawn within the command's time budget: intervals_bus.png" in path.read_text()
    path = write_report(cert, tmp_path, deadline=Deadline.after(600.0))
    assert list(tmp_path.glob("*.png")) and "Not drawn" not in path.read_text()

"""``gridverify study``: the file is checked before anything runs; the report agrees with the certificates."""

from __future__ import annotations

import argparse

import pytest

from gridverify.cli import _parser
from gridverify.study import JobStore, load_study, summary_rows
from gridverify.study.cli import add_study_parser, main
from tests.study.support import write_study


def test_a_malformed_study_is_refused_before_any_job_starts(tmp_path, capsys):
    study = write_study(tmp_path, 'cases = ["case99"]\nregions = ["+-5%", "5%"]\ntimeout_s = 1\n')
    out = tmp_path / "out"
    assert main([str(study), "--out", str(out), "--workers", "2"]) == 2
    assert "cases[0] 'case99': no case 'case99'" in capsys.readouterr().err
    assert not out.exists()  # no store, no event log: nothing started


def test_check_lists_the_jobs_and_runs_nothing(tmp_path, small_study, capsys):
    assert main([str(small_study), "--out", str(tmp_path / "out"), "--check"]) == 0
    printed = capsys.readouterr().out
    assert all(job.id in printed for job in load_study(small_study))
    assert not (tmp_path / "out").exists()


def test_bad_options_and_an_unreachable_scheduler_exit_2(tmp_path, small_study, capsys):
    assert main([str(small_study), "--workers", "0"]) == 2
    argv = [str(small_study), "--out", str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:1"]
    argv += ["--connect-timeout", "1"]
    assert main(argv) == 2
    assert "cannot reach the scheduler tcp://127.0.0.1:1" in capsys.readouterr().err


def test_the_parser_plugs_into_a_gridverify_parser():
    parser = argparse.ArgumentParser(prog="gridverify")
    add_study_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", "s.toml", "--workers", "3", "--scheduler", "tcp://h:8786"])
    assert (args.workers, args.scheduler) == (3, "tcp://h:8786")
    assert _parser("study").parse_args(["study", "s.toml"]).study.name == "s.toml"  # the top CLI's table


@pytest.mark.slow  # a third run of real jobs; the default suite has two (test_dask, test_resume)
def test_the_report_agrees_with_the_certificates(tmp_path, small_study):
    out = tmp_path / "out"
    assert main([str(small_study), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    store = JobStore(out)
    rows = summary_rows(store)
    assert len(rows) == len(load_study(small_study))
    for row in rows:
        records = store.certificate(row.job).family(row.family)
        assert (row.verified, row.violated, row.unknown) == tuple(
            sum(r.verdict == v for r in records) for v in ("verified", "violated", "unknown")
        )
        assert row.worst_bound == max(r.bound for r in records)
    lines = (out / "report" / "summary.csv").read_text().splitlines()
    assert len(lines) == 1 + len(rows) and lines[0].startswith("case,surrogate,region,region_pct")
    figures = {p.name for p in (out / "report").glob("*.png")}
    assert figures == {"violation_vs_region.png", "heatmap_case14.png"}

"""`gridverify study` on bad input: options, results folders and study files are checked before anything is
written (exit code 2, one line naming the file or option and the problem, no traceback, no folder left
behind); a stored certificate that is corrupted or contradicts its verdicts is not counted as finished and
its job is computed again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridverify.cli import main
from gridverify.study import JobStore, RunConfig, run_jobs
from gridverify.study.report import summary_rows, write_report
from tests.study.support import synthetic_job, vm_jobs, write_study

STUDY = 'cases = ["case14"]\nfamilies = ["vm_max"]\nregions = ["+-1%"]\ntimeout_s = 5\n'


def _refused(argv: list[str], capsys: pytest.CaptureFixture, *needles: str) -> str:
    code = main(["study", *argv, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("gridverify study: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--connect-timeout", "nan"], "--connect-timeout must be a positive number"),
        (["--connect-timeout", "inf"], "--connect-timeout must be a positive number"),
        (["--connect-timeout", "0"], "--connect-timeout must be a positive number"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--retries", "-1"], "--retries >= 0"),
    ],
)
def test_a_bad_option_is_named_and_leaves_no_folder(options, problem, tmp_path, capsys):
    study = write_study(tmp_path, STUDY)
    _refused([str(study), "--out", str(tmp_path / "out"), *options], capsys, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


def test_out_onto_a_file_says_so(tmp_path, capsys):
    study = write_study(tmp_path, STUDY)
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    _refused([str(study), "--out", str(blocker)], capsys, str(blocker), "is a file")
    _refused([str(study), "--out", str(blocker / "sub")], capsys, str(blocker), "is a file")
    assert blocker.read_text() == "keep me"


def test_a_missing_study_file_is_named(tmp_path, capsys):
    _refused(
        [str(tmp_path / "absent.toml"), "--out", str(tmp_path / "out")],
        capsys,
        "absent.toml",
        "does not exist",
    )
    _refused([str(tmp_path), "--out", str(tmp_path / "out")], capsys, str(tmp_path), "is a folder")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (STUDY.replace("timeout_s = 5", "timeout_s = inf"), "timeout_s: must be a positive number"),
        (STUDY.replace("timeout_s = 5", "timeout_s = nan"), "timeout_s: must be a positive number"),
        (STUDY.replace("timeout_s = 5", "timeout_s = 0"), "timeout_s: must be a positive number"),
        (STUDY + 'device = "meta"\n', "device 'meta' is not available"),
        (STUDY.replace('"+-1%"', '"+-abc%"'), "regions[0] '+-abc%'"),
        (STUDY + 'surrogates = ["text.pt"]\n', "text.pt: not a torch weights file"),
        (STUDY + "[[broken\n", "not valid TOML"),
    ],
)
def test_a_bad_study_file_is_named_in_one_line(body, problem, tmp_path, capsys):
    (tmp_path / "text.pt").write_text("not weights")
    study = write_study(tmp_path, body)
    _refused([str(study), "--out", str(tmp_path / "out")], capsys, str(study), problem)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list:
    return vm_jobs(tmp_path_factory.mktemp("study"), ["+-1%", "+-5%"])


def _corrupt(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_text(path.read_text()[:-30])
        return
    d = json.loads(path.read_text())
    if how == "nan_bound":
        d["records"][0]["bound"] = float("nan")
    else:  # "contradiction": verified with a bound above the tolerance
        d["records"][0].update(verdict="verified", bound=1.0, worst=0.5)
        d["counts"] = None
    path.write_text(json.dumps(d))


@pytest.mark.parametrize("how", ["truncated", "nan_bound", "contradiction"])
def test_a_corrupted_certificate_is_not_finished_and_is_recomputed(how, tmp_path, jobs):
    store = JobStore(tmp_path)
    store.write_plan(jobs, "corrupt")
    first = run_jobs(jobs, store, RunConfig(workers=1), synthetic_job)
    assert len(first.computed) == len(jobs) and not first.failed
    bad = jobs[1].id
    _corrupt(store.certificate_path(bad), how)
    assert not store.is_done(bad) and all(store.is_done(j.id) for j in jobs if j.id != bad)
    write_report(store)
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert f"{len(jobs) - 1} of {len(jobs)} jobs finished, 0 failed, 1 not run yet" in summary
    second = run_jobs(jobs, store, RunConfig(workers=1), synthetic_job)
    assert second.computed == (bad,) and len(second.skipped) == len(jobs) - 1
    assert store.is_done(bad) and store.certificate_path(bad).with_suffix(".json.invalid").exists()
    assert any(e["event"] == "invalid" and e["job"] == bad for e in store.events())
    assert len(summary_rows(store)) == len(jobs)  # one family per job: every job has its row again


def test_a_second_study_into_the_same_folder_is_refused(tmp_path, capsys):
    """Another live process holds the results folder's lock: nothing is run or written."""
    import subprocess

    study = write_study(tmp_path, STUDY)
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (out / ".report.lock").write_text(str(other.pid))
        _refused([str(study), "--out", str(out)], capsys, str(out), f"process {other.pid}", "another study")
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in out.iterdir()) == [".report.lock"]

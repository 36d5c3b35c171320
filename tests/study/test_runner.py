"""Store, resume and executor logic with a cheap job (`synthetic_job`) on local worker processes."""

from __future__ import annotations

import functools
import json

import pytest

from gridverify.study import JobStore, RunConfig, run_jobs
from gridverify.verify import Certificate
from tests.study.support import dying_job, failing_job, synthetic_job, vm_jobs


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> list:
    return vm_jobs(tmp_path_factory.mktemp("study"), ["+-1%", "+-5%", "+-8%"])


def _submitted(store: JobStore) -> list[str]:
    return [e["job"] for e in store.events() if e["event"] == "submitted"]


def test_a_rerun_skips_finished_jobs_and_runs_the_rest(tmp_path, jobs):
    store = JobStore(tmp_path)
    store.write_plan(jobs)
    first = run_jobs(jobs[:4], store, RunConfig(workers=2), synthetic_job)
    assert sorted(first.computed) == sorted(j.id for j in jobs[:4]) and not first.failed
    stamps = {j.id: store.certificate_path(j.id).stat().st_mtime_ns for j in jobs[:4]}
    second = run_jobs(jobs, store, RunConfig(workers=2), synthetic_job)
    assert sorted(second.skipped) == sorted(stamps) and len(second.computed) == len(jobs) - 4
    assert sorted(_submitted(store)) == sorted(j.id for j in jobs)  # every job submitted exactly once
    assert {i: store.certificate_path(i).stat().st_mtime_ns for i in stamps} == stamps
    cert = store.certificate(jobs[0].id)
    assert isinstance(cert, Certificate) and cert.records[0].bound == pytest.approx(0.01 - 0.04)
    assert store.run_record(jobs[0].id)["attempt"] == 1


def test_a_job_that_raises_is_recorded_and_run_again_next_time(tmp_path, jobs):
    store = JobStore(tmp_path)
    outcome = run_jobs(jobs, store, RunConfig(workers=2), functools.partial(failing_job, "+-5%"))
    bad = {j.id for j in jobs if j.region == "+-5%"}
    assert set(outcome.failed) == bad and all("ArithmeticError" in m for m in outcome.failed.values())
    assert set(store.failures()) == bad
    assert json.loads((tmp_path / "failures" / f"{min(bad)}.json").read_text())["error"] == "ArithmeticError"
    again = run_jobs(jobs, store, RunConfig(workers=1), synthetic_job)
    assert set(again.computed) == bad and again.complete
    assert store.failures() == {}  # a success clears the failure record


def test_a_lost_local_worker_gets_its_job_run_again(tmp_path, jobs):
    markers = tmp_path / "markers"
    markers.mkdir()
    store = JobStore(tmp_path / "out")
    outcome = run_jobs(jobs[:2], store, RunConfig(workers=2), functools.partial(dying_job, markers))
    assert outcome.complete and sorted(outcome.computed) == sorted(j.id for j in jobs[:2])
    assert {p.name for p in markers.iterdir()} == {j.id for j in jobs[:2]}  # every job killed its worker once
    assert sorted(e["job"] for e in store.events() if e["event"] == "lost") == sorted(j.id for j in jobs[:2])
    assert [store.run_record(j.id)["attempt"] for j in jobs[:2]] == [2, 2]  # a death costs only its own job


def test_a_job_losing_its_worker_every_time_fails_after_the_retries(tmp_path, jobs):
    markers = tmp_path / "markers"
    markers.mkdir()
    config = RunConfig(workers=1, retries=0)
    outcome = run_jobs(jobs[:1], JobStore(tmp_path / "out"), config, functools.partial(dying_job, markers))
    assert list(outcome.failed) == [jobs[0].id] and "worker lost 1 times" in outcome.failed[jobs[0].id]

"""`LocalProcesses`: jobs really run side by side, each process runs one job, shutdown drops the queue."""

from __future__ import annotations

import os

from gridverify.study.executors import LocalProcesses
from tests.study.support import rendezvous, sleepy


def test_two_workers_run_two_jobs_at_the_same_time(tmp_path):
    executor = LocalProcesses(2)
    try:
        a = executor.submit(rendezvous, tmp_path, "a", "b")
        b = executor.submit(rendezvous, tmp_path, "b", "a")
        pids = {a.result(timeout=120), b.result(timeout=120)}
    finally:
        executor.shutdown()
    assert len(pids) == 2 and os.getpid() not in pids


def test_shutdown_cancels_what_has_not_started_and_lets_the_running_job_finish():
    executor = LocalProcesses(1)
    running = executor.submit(sleepy, 1.0)
    queued = [executor.submit(sleepy, 0.0) for _ in range(3)]
    executor.shutdown(wait=True)
    assert running.result() != os.getpid()
    assert all(f.cancelled() for f in queued)

"""Studies on a real Dask cluster (scheduler and two worker processes on loopback): the same certificates
as local processes, and a study that survives a worker killed in the middle of a job."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from gridverify.study import JobStore, load_study
from gridverify.study.cli import main


@pytest.fixture
def cluster():
    # dashboard on a free loopback port: None would still try 8787, taken when two test processes run
    options = dict(threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    with LocalCluster(n_workers=2, **options) as cluster:
        yield cluster


def _answers(out: Path) -> dict[str, list[tuple]]:
    """Per job: every record's name, verdict and certified bound (what a certificate asserts)."""
    store = JobStore(out)
    _, jobs = store.plan()
    return {i: [(r.name, r.verdict, r.bound) for r in c.records] for i, c in store.completed(jobs).items()}


def test_a_dask_cluster_gives_the_certificates_of_local_processes(tmp_path, small_study, cluster):
    jobs = load_study(small_study)
    assert main([str(small_study), "--out", str(tmp_path / "local"), "--no-progress"]) == 0
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    argv = [str(small_study), "--out", str(tmp_path / "dask"), "--scheduler", address, "--no-progress"]
    assert main(argv) == 0
    local, dask = _answers(tmp_path / "local"), _answers(tmp_path / "dask")
    assert set(local) == set(dask) == {j.id for j in jobs}
    verdicts = {v for records in local.values() for _, v, _ in records}
    assert "unknown" not in verdicts  # every constraint decided: answers independent of timing
    differ = {i: (local[i], dask[i]) for i in local if local[i] != dask[i]}
    assert not differ, differ
    pids = {JobStore(tmp_path / "dask").run_record(j.id)["pid"] for j in jobs}
    with Client(cluster, set_as_default=False) as client:
        assert pids <= set(client.run(os.getpid).values())  # the jobs ran on the cluster's workers


def _executing(dask_worker) -> int:
    return len(dask_worker.state.executing)


def test_a_worker_killed_during_a_job_leaves_the_study_complete(tmp_path, small_study, cluster):
    jobs = load_study(small_study)
    out = tmp_path / "dask"
    argv = [str(small_study), "--out", str(out), "--scheduler", cluster.scheduler_address, "--no-progress"]
    codes: list[int] = []
    study = threading.Thread(target=lambda: codes.append(main(argv)))
    with Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        study.start()
        victim = _busy_worker(client)
        os.kill(pids[victim], signal.SIGKILL)
        study.join(300)
        assert not study.is_alive()
        assert pids[victim] not in client.run(os.getpid).values()  # the worker process really died
    assert codes == [0]
    assert set(_answers(out)) == {j.id for j in jobs}


def _busy_worker(client: Client, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = [address for address, n in client.run(_executing).items() if n]
        if busy:
            return busy[0]
        time.sleep(0.02)
    raise AssertionError("no worker started a job")

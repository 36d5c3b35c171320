"""Run a study: skip finished jobs, submit the rest to an executor, store each certificate as it arrives.

The job function is a parameter (`run_verify_job` by default: one `gridverify.verify.verify` call), so the
same machinery runs any job that returns a `JobResult`. Every pending job is submitted; results are written
as they complete; a job whose worker was lost (a local process that died, a Dask worker lost more often
than the scheduler tolerates) is submitted again at once, up to ``retries`` times; a job that raises is
recorded in ``failures/`` and left for the next run of the study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from gridverify.study.executors import ExecutorPool, dask_pool, local_pool
from gridverify.study.jobs import run_verify_job
from gridverify.study.spec import Job, expand, parse_study
from gridverify.study.store import JobResult, JobStore

__all__ = ["RunConfig", "StudyOutcome", "run_jobs", "run_study", "run_verify_job"]

JobFn = Callable[[Job], JobResult]


@dataclass(frozen=True)
class RunConfig:
    """How to run a study's jobs: ``workers`` local processes, or the Dask scheduler at ``scheduler``."""

    workers: int = 1
    scheduler: str | None = None  # "tcp://host:port"; None: local processes
    retries: int = 2  # extra submissions of a job whose worker was lost
    progress: bool = False
    connect_timeout_s: float = 30.0


@dataclass(frozen=True)
class StudyOutcome:
    """What one run of a study did: ids computed now, ids found finished, ids that failed (-> message)."""

    computed: tuple[str, ...]
    skipped: tuple[str, ...]
    failed: dict[str, str]
    seconds: float
    executor: str

    @property
    def complete(self) -> bool:
        return not self.failed


def run_study(
    path: str | Path, out: str | Path, config: RunConfig, job_fn: JobFn | None = None
) -> StudyOutcome:
    """Check the study file at ``path`` (raises `StudyError` before anything runs), run its jobs into the
    store at ``out``, and write the report there; the folder is locked while it runs (a second run into it
    raises `gridverify.reports.report.ReportLockedError`)."""
    from gridverify.reports.report import report_lock
    from gridverify.study.report import write_report

    path = Path(path)
    spec = parse_study(path.read_text(), str(path))
    jobs = expand(spec, str(path))
    store = JobStore(Path(out))
    store.root.mkdir(parents=True, exist_ok=True)
    with report_lock(store.root):  # one run per results folder: a second raises ReportLockedError
        store.write_plan(jobs, spec.name or path.stem)
        outcome = run_jobs(jobs, store, config, job_fn or run_verify_job)
        write_report(store)
    return outcome


def run_jobs(jobs: Sequence[Job], store: JobStore, config: RunConfig, job_fn: JobFn) -> StudyOutcome:
    """Every job of ``jobs`` without a certificate in ``store``, run on the executor ``config`` names."""
    start = time.monotonic()
    pending = store.pending(jobs)
    waiting = {j.id for j in pending}
    skipped = tuple(j.id for j in jobs if j.id not in waiting)
    store.log("resume", skipped=len(skipped), pending=len(pending))
    bar = tqdm(total=len(jobs), initial=len(skipped), unit="job", desc="study", disable=not config.progress)
    with bar, _pool(config) as pool:
        computed, failed = _rounds(pending, store, pool, job_fn, config.retries, bar)
    return StudyOutcome(computed, skipped, failed, time.monotonic() - start, pool.description)


def _pool(config: RunConfig) -> ExecutorPool:
    if config.scheduler:
        return dask_pool(config.scheduler, config.connect_timeout_s)
    return local_pool(config.workers)


def _rounds(
    pending: Sequence[Job], store: JobStore, pool: ExecutorPool, job_fn: JobFn, retries: int, bar: tqdm
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Submit every pending job; store each result as it completes; submit lost jobs again at once."""
    attempts = {j.id: 0 for j in pending}
    computed: list[str] = []
    failed: dict[str, str] = {}
    futures = _submit(pending, store, pool, job_fn, attempts)
    while futures:
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        for future in finished:
            job = futures.pop(future)
            status = _collect(future, job, store, pool, attempts[job.id], retries)
            if status == "done":
                computed.append(job.id)
                bar.update()
            elif status == "retry":
                futures.update(_submit([job], store, pool, job_fn, attempts))
            else:
                failed[job.id] = status
    return tuple(computed), failed


def _submit(
    queue: Sequence[Job], store: JobStore, pool: ExecutorPool, job_fn: JobFn, attempts: dict[str, int]
) -> dict[Future, Job]:
    executor = pool.executor
    futures = {}
    for job in queue:
        attempts[job.id] += 1
        store.log("submitted", job=job.id, attempt=attempts[job.id])
        futures[executor.submit(job_fn, job)] = job
    return futures


def _collect(
    future: Future, job: Job, store: JobStore, pool: ExecutorPool, attempt: int, retries: int
) -> str:
    """Store a finished job's certificate: "done", "retry" (its worker was lost), or the failure message."""
    try:
        store.save(job, future.result(), attempt)
        return "done"
    except pool.lost as err:
        store.log("lost", job=job.id, attempt=attempt, error=f"{type(err).__name__}: {err}")
        if attempt <= retries:
            return "retry"
        store.record_failure(job, err, attempt)
        return f"worker lost {attempt} times: {type(err).__name__}: {err}"
    except Exception as err:  # the job raised (or sent back a bad certificate): recorded, run again next time
        store.record_failure(job, err, attempt)
        return f"{type(err).__name__}: {err}"

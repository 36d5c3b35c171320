"""The job a study runs: one `gridverify.verify.verify` call, checked against the job's identity.

A job travels as data (`Job`: names, region text, settings, fingerprints); the worker loads the case and
surrogate itself and checks that their files and the parsed region give the job's own id, so a worker with
other case files or another surrogate (a machine with an older checkout) refuses the job instead of
answering another question.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any

from gridverify.study.spec import SHIPPED, Job, case_fingerprint, file_sha256, job_id, surrogate_path
from gridverify.study.store import JobResult

__all__ = ["JobMismatch", "open_job", "run_verify_job"]


class JobMismatch(RuntimeError):
    """The worker's case, surrogate or region is not the one the job was planned with."""


def open_job(job: Job) -> tuple[Any, Any]:
    """``(case, region)`` of the job, with its surrogate, as planned (raises `JobMismatch` otherwise).

    The case is read once per worker process and kept (keyed by its and its surrogate's file hashes, so
    changed files are read again): grid data, constraint set and surrogate cost more than a small job.
    """
    from gridverify.specs import Region
    from gridverify.surrogate import load_case

    folder_case = load_case(job.case)  # reads case.toml only
    seen = (case_fingerprint(folder_case), file_sha256(surrogate_path(folder_case, job.surrogate)))
    if seen != job.fingerprints:
        raise JobMismatch(f"job {job.id} ({job.describe()}): this worker's case or surrogate files differ")
    case = _opened_case(job.case, job.surrogate, seen)
    region = Region.parse(job.region, case.data)
    if job_id(job, (region.lower.tolist(), region.upper.tolist())) != job.id:
        raise JobMismatch(f"job {job.id} ({job.describe()}): this worker's region {job.region!r} differs")
    return case, region


@functools.lru_cache(maxsize=8)
def _opened_case(case_ref: str, surrogate: str, fingerprints: tuple[str, str]) -> Any:
    """The case with its surrogate selected; its grid data, constraints and surrogate are read on first use
    and kept with it (``fingerprints`` only keys the cache)."""
    from gridverify.surrogate import load_case
    from gridverify.surrogate.case import read_surrogate

    case = load_case(case_ref)
    if surrogate != SHIPPED:
        # Case.surrogate is a cached_property: filling its cache on this fresh Case selects the surrogate
        case.__dict__["surrogate"] = read_surrogate(surrogate_path(case, surrogate), case.data)
    return case


def run_verify_job(job: Job) -> JobResult:
    """Verify ``job.families`` of ``job.case`` under its surrogate over ``job.region`` (one torch thread)."""
    import torch

    from gridverify.verify import VerifyConfig, verify

    torch.set_num_threads(1)
    start = time.monotonic()
    case, region = open_job(job)
    config = VerifyConfig(tolerance=job.tolerance, timeout_s=job.timeout_s, device=job.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cert = verify(case, region=region, families=job.families, config=config, progress=False)
    notes = tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return JobResult.of(job, cert, time.monotonic() - start, notes)

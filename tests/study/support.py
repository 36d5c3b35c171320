"""Helpers of the study tests: study files, a random-weight surrogate file, and cheap job functions.

The job functions live in an importable module because spawned workers and Dask workers import them by
name. `synthetic_job` builds a real `Certificate` from numbers the job determines (no bound engine), for
tests of the store, resume and executor logic (its workers start in about a second, where a worker that
imports the verifier takes several); the tests of the issue run real `verify` jobs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gridverify.study import Job, JobResult

SCHEMA = "gridverify.certificate/1"  # written out here so workers of the cheap jobs need not import verify


def write_study(folder: Path, body: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(body)
    return path


def vm_jobs(folder: Path, regions: list[str]) -> list[Job]:
    """The jobs of a study of case14's voltage limits under a random surrogate (`random_surrogate`) over
    ``regions``, 5 s each, written into ``folder``."""
    import json

    from gridverify.study import load_study

    surrogate = random_surrogate(folder / "random.pt")
    body = f'cases = ["case14"]\nsurrogates = ["{surrogate}"]\nfamilies = ["vm_min", "vm_max"]\n'
    body += f"regions = {json.dumps(regions)}\ntimeout_s = 5\n"
    return load_study(write_study(folder, body))


def random_surrogate(path: Path, seed: int = 0) -> Path:
    """A case14 surrogate with random weights (hidden [8]), saved as training saves one."""
    import numpy as np
    import torch

    from gridverify.surrogate import AcopfSurrogate, Layout
    from gridverify.surrogate.case import load_case

    data = load_case("case14").data
    torch.manual_seed(seed)
    model = AcopfSurrogate(Layout.of(data), [8], "relu")
    n = len(data.buses.vmin_pu)
    lower = np.r_[data.gens.pmin_pu, data.gens.qmin_pu, data.buses.vmin_pu, np.full(n, -0.5)]
    upper = np.r_[data.gens.pmax_pu, data.gens.qmax_pu, data.buses.vmax_pu, np.full(n, 0.5)]
    region = load_case("case14").region
    model.set_scaling(region.center, region.radius, lower, upper)
    torch.save({"config": model.config(), "state_dict": model.state_dict()}, path)
    return path


def synthetic_job(job: Job) -> JobResult:
    """A certificate whose bound grows with the region: ``bound = region_pct / 100 - 0.04`` per family."""
    time.sleep(0.05)
    bound = job.region_pct / 100 - 0.04
    verdict = "verified" if bound <= job.tolerance else "unknown"
    records = [
        {
            "name": f"{f}[bus 1]",
            "family": f,
            "kind": "inequality",
            "element": ["bus", 1],
            "unit": "pu",
            "tolerance": job.tolerance,
            "verdict": verdict,
            "bound": bound,
            "worst": bound - 0.01,
            "witness": None,
            "seconds": 0.01,
            "domains": 1,
        }
        for f in job.families
    ]
    cert = {
        "schema": SCHEMA,
        "case": job.case,
        "surrogate": "synthetic",
        "region": {"label": job.region},
        "settings": {"tolerance": job.tolerance},
        "records": records,
        "seconds": 0.05,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "gridverify": "test",
        "complete": True,
    }
    return JobResult(job.id, cert, 0.05, "localhost", os.getpid())


def dying_job(marker_dir: Path, job: Job) -> JobResult:
    """Kills its own worker process the first time it runs a job (a lost worker), then behaves."""
    marker = Path(marker_dir) / job.id
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(9)
    return synthetic_job(job)


def failing_job(bad_region: str, job: Job) -> JobResult:
    """Raises for the jobs of one region (a job error, not a lost worker)."""
    if job.region == bad_region:
        raise ArithmeticError(f"no answer for {job.region}")
    return synthetic_job(job)


def rendezvous(folder: Path, me: str, other: str, timeout_s: float = 60.0) -> int:
    """Leave a mark, then wait for the other job's: finishes only when both run at the same time."""
    (Path(folder) / me).touch()
    deadline = time.monotonic() + timeout_s
    while not (Path(folder) / other).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never ran alongside {me}")
        time.sleep(0.01)
    return os.getpid()


def sleepy(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()

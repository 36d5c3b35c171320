"""The job store: one folder per study run, one file per job result, every write atomic.

Layout of ``OUT`` (all JSON unless said otherwise)::

    OUT/jobs.json                   the study's jobs (id -> job), rewritten at each start
    OUT/certificates/<id>.json      the job's `Certificate`; a valid one is what "finished" means
    OUT/certificates/<id>.json.invalid  a certificate that failed its checks, moved aside (job re-run)
    OUT/runs/<id>.json              where and how long the job ran (host, pid, seconds, attempt)
    OUT/failures/<id>.json          the last error of a job that raised (removed once it succeeds)
    OUT/events.jsonl                append-only log: start, submitted, done, failed, lost (one JSON a line)
    OUT/report/                     the study report (`gridverify.study.report`)

A certificate is written with a temporary file and `os.replace`, so a study killed at any moment leaves
each certificate either whole or absent: re-running recomputes exactly the jobs without one. A certificate
damaged afterwards (or contradicting its own verdicts) fails `Certificate.load`'s checks and is recomputed.
Results come back to the process that runs the study and are written there, so workers on other machines
need no shared file system.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridverify.study.spec import Job

if TYPE_CHECKING:  # the verify package is imported where certificates are read: workers stay light
    from gridverify.specs.certificate import Certificate

__all__ = ["JobResult", "JobStore"]


@dataclass(frozen=True)
class JobResult:
    """What a job sends back: its certificate as a dict (`Certificate.to_dict`) and where it ran."""

    job_id: str
    certificate: dict[str, Any]
    seconds: float
    host: str
    pid: int
    warnings: tuple[str, ...] = ()  # what the job warned about (e.g. a region beyond the training region)

    @classmethod
    def of(
        cls, job: Job, certificate: Certificate, seconds: float, warnings: tuple[str, ...] = ()
    ) -> JobResult:
        return cls(job.id, certificate.to_dict(), seconds, socket.gethostname(), os.getpid(), warnings)


@dataclass(frozen=True)
class JobStore:
    """Results of a study under ``root`` (see the module docstring for the layout)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- plan ----------------------------------------------------------------------------------------
    def write_plan(self, jobs: Sequence[Job], name: str = "") -> None:
        """Record the study's jobs (for the report) and log a start event."""
        from gridverify.specs.certificate import write_json_atomic

        write_json_atomic(self.root / "jobs.json", {"name": name, "jobs": [j.to_dict() for j in jobs]})
        self.log("start", jobs=len(jobs), pid=os.getpid())

    def plan(self) -> tuple[str, list[Job]]:
        """The study name and jobs recorded by the last `write_plan`."""
        d = json.loads((self.root / "jobs.json").read_text())
        return d["name"], [Job.from_dict(j) for j in d["jobs"]]

    # -- results -------------------------------------------------------------------------------------
    def certificate_path(self, job_id: str) -> Path:
        return self.root / "certificates" / f"{job_id}.json"

    def is_done(self, job_id: str) -> bool:
        """Whether the job has a certificate that reads back and passes its own checks (a corrupted or
        contradictory one does not count: `Certificate.load` validates every record's verdict rule)."""
        return self.certificate_problem(job_id) is None

    def certificate_problem(self, job_id: str) -> str | None:
        """Why the job's certificate does not count as its result ("absent", or what is wrong), or None."""
        from gridverify.specs.certificate import CertificateError

        if not self.certificate_path(job_id).exists():
            return "absent"
        try:
            self.certificate(job_id)
        except CertificateError as err:
            return str(err)
        return None

    def pending(self, jobs: Iterable[Job]) -> list[Job]:
        """The jobs without a valid certificate, in order. An invalid certificate is moved aside (to
        ``certificates/<id>.json.invalid``, logged as ``invalid``) so the job is computed again."""
        out = []
        for job in jobs:
            problem = self.certificate_problem(job.id)
            if problem is None:
                continue
            if problem != "absent":
                path = self.certificate_path(job.id)
                os.replace(path, path.with_name(path.name + ".invalid"))
                self.log("invalid", job=job.id, error=problem)
            out.append(job)
        return out

    def save(self, job: Job, result: JobResult, attempt: int) -> Certificate:
        """Check the returned certificate; write its run record, then the certificate (which marks done)."""
        from gridverify.specs.certificate import Certificate, write_json_atomic

        cert = Certificate.from_dict(result.certificate)
        run = {"job": job.id, "seconds": result.seconds, "host": result.host, "pid": result.pid}
        run["warnings"] = list(result.warnings)
        write_json_atomic(self.root / "runs" / f"{job.id}.json", {**run, "attempt": attempt})
        cert.save(self.certificate_path(job.id))
        (self.root / "failures" / f"{job.id}.json").unlink(missing_ok=True)
        self.log("done", job=job.id, seconds=result.seconds, host=result.host)
        return cert

    def certificate(self, job_id: str) -> Certificate:
        from gridverify.specs.certificate import Certificate

        return Certificate.load(self.certificate_path(job_id))

    def run_record(self, job_id: str) -> dict[str, Any]:
        return json.loads((self.root / "runs" / f"{job_id}.json").read_text())

    def record_failure(self, job: Job, error: BaseException, attempt: int) -> None:
        from gridverify.specs.certificate import write_json_atomic

        detail = {"job": job.id, "error": type(error).__name__, "message": str(error), "attempt": attempt}
        write_json_atomic(self.root / "failures" / f"{job.id}.json", detail)
        self.log("failed", job=job.id, error=f"{type(error).__name__}: {error}")

    def failures(self) -> dict[str, dict[str, Any]]:
        folder = self.root / "failures"
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def completed(self, jobs: Iterable[Job]) -> dict[str, Certificate]:
        """Certificates of the finished jobs among ``jobs`` (unreadable ones are left out)."""
        from gridverify.specs.certificate import CertificateError

        out = {}
        for job in jobs:
            if self.is_done(job.id):
                try:
                    out[job.id] = self.certificate(job.id)
                except CertificateError:
                    continue
        return out

    # -- event log -----------------------------------------------------------------------------------
    def log(self, event: str, **fields: Any) -> None:
        """Append one event (a single short write: lines stay whole when a run is killed)."""
        self.root.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
        fd = os.open(self.root / "events.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def events(self) -> list[dict[str, Any]]:
        """Every logged event, oldest first (a torn last line from a killed run is skipped)."""
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

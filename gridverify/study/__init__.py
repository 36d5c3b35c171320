"""Grid studies: many cases x surrogates x constraint families x load regions x tolerances, each one
`gridverify.verify.verify` job, run resumably on local processes or a Dask distributed cluster.

- `gridverify.study.spec`: the study file (TOML), its checks and its expansion into jobs with stable ids;
- `gridverify.study.store`: the job store (a certificate file per job, atomic writes, an event log);
- `gridverify.study.executors`: local processes or Dask, both through `concurrent.futures`;
- `gridverify.study.runner`: skip finished jobs, run the rest, re-run jobs of lost workers;
- `gridverify.study.report`: summary table and figures; `gridverify.study.cli`: ``gridverify study``.
"""

from gridverify.study.jobs import JobMismatch, run_verify_job
from gridverify.study.report import SummaryRow, summary_rows, write_report
from gridverify.study.runner import RunConfig, StudyOutcome, run_jobs, run_study
from gridverify.study.spec import Job, StudyError, StudySpec, expand, load_study, parse_study
from gridverify.study.store import JobResult, JobStore

__all__ = [
    "Job",
    "JobMismatch",
    "JobResult",
    "JobStore",
    "RunConfig",
    "StudyError",
    "StudyOutcome",
    "StudySpec",
    "SummaryRow",
    "expand",
    "load_study",
    "parse_study",
    "run_jobs",
    "run_study",
    "run_verify_job",
    "summary_rows",
    "write_report",
]

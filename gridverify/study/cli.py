"""``gridverify study``: run a study file's jobs (resumably) and write its report.

`add_study_parser` adds the subcommand to the ``gridverify`` parser (a row of `gridverify.cli.COMMANDS`,
which runs it with `study_command`); ``python -m gridverify.study`` runs the same command on its own
(`main`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["add_study_parser", "main", "study_command"]

DESCRIPTION = """\
Run every job of a study file (cases x surrogates x families x load regions x tolerances, each one
`gridverify verify` run) and write a summary table and figures to OUT/report/. Each finished job's
certificate is written atomically to OUT/certificates/<job id>.json; running the same command again skips
finished jobs and runs the others, so a study can be stopped (even killed) and resumed. Jobs run in
--workers local processes, or on a Dask distributed cluster with --scheduler tcp://HOST:PORT (start one
with `dask scheduler` and `dask worker tcp://HOST:PORT --nthreads 1` on each machine, gridverify
installed on all). The study file is checked as a whole before any job starts.

A study file (paths relative to it; only cases, regions and timeout_s are required):

    name = "case14 regions"
    cases = ["case14"]                      # shipped case names or case folders
    surrogates = ["shipped"]                # the case's own (default) or surrogate .pt files
    families = ["thermal_from", "vm_min"]   # default: every constraint family
    regions = ["+-1%", "+-5%", "0.9:1.1"]   # +-P%, P% or LO:HI load factors
    tolerances = [1e-4]
    timeout_s = 60                          # budget of one job
    split_families = true                   # one job per family (default) or one for all
"""


def add_study_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``study`` to a parser's subcommands; the parsed namespace's ``handler`` runs it."""
    p = subparsers.add_parser(
        "study",
        help="run a study (cases x surrogates x families x regions) resumably, locally or on Dask",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", type=Path, help="study file (TOML, below)")
    p.add_argument("--out", type=Path, help="results folder (default: reports/study/<study file name>)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--scheduler", help="Dask scheduler address tcp://HOST:PORT (instead of local workers)")
    p.add_argument(
        "--retries", type=int, default=2, help="re-runs of a job whose worker was lost (default 2)"
    )
    p.add_argument(
        "--connect-timeout", type=float, default=30.0, help="seconds to reach the scheduler (default 30)"
    )
    p.add_argument("--check", action="store_true", help="check the study file and list its jobs; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def study_command(args: argparse.Namespace) -> int:
    """Run the parsed ``study`` command: 0 when every job has a certificate, 1 when some failed, 2 on a bad
    study file, option or results folder (found before anything is written)."""
    from gridverify.reports.report import ReportLockedError
    from gridverify.study.runner import RunConfig, run_study
    from gridverify.study.spec import StudyError, load_study

    problem = _option_problem(args)
    if problem is not None:
        print(f"gridverify study: {problem}", file=sys.stderr)
        return 2
    try:
        if args.check:
            return _list_jobs(load_study(args.study))
        config = RunConfig(
            args.workers, args.scheduler, args.retries, not args.no_progress, args.connect_timeout
        )
        outcome = run_study(args.study, _out(args), config)
    except (StudyError, FileNotFoundError, IsADirectoryError, UnicodeDecodeError) as err:
        print(f"gridverify study: {_one_line(err)}", file=sys.stderr)
        return 2
    except ReportLockedError as err:
        print(f"gridverify study: {err} (another study runs into this --out)", file=sys.stderr)
        return 2
    except OSError as err:
        if args.scheduler is None:  # no scheduler: a file system problem
            print(f"gridverify study: {err}", file=sys.stderr)
            return 2
        print(f"gridverify study: cannot reach the scheduler {args.scheduler}: {err}", file=sys.stderr)
        return 2
    print(
        f"{len(outcome.computed)} job(s) run, {len(outcome.skipped)} already finished, "
        f"{len(outcome.failed)} failed, {outcome.seconds:.1f} s on {outcome.executor}; "
        f"report: {_out(args) / 'report'}"
    )
    for job_id, message in outcome.failed.items():
        print(f"  failed {job_id}: {message}", file=sys.stderr)
    return 0 if outcome.complete else 1


def _one_line(err: BaseException) -> str:
    """A `StudyError` keeps its one problem per line; anything else is cut to its first line."""
    from gridverify.study.spec import StudyError

    text = str(err)
    return text if isinstance(err, StudyError) else (text.splitlines() or [type(err).__name__])[0]


def _option_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the options or the results folder (None: nothing); creates nothing."""
    if args.workers < 1 or args.retries < 0:
        return "--workers must be >= 1 and --retries >= 0"
    if not (math.isfinite(args.connect_timeout) and args.connect_timeout > 0):
        return f"--connect-timeout must be a positive number of seconds, got {args.connect_timeout}"
    if not args.study.is_file():
        return f"study file {args.study} {'is a folder' if args.study.is_dir() else 'does not exist'}"
    if args.check:
        return None
    return _out_problem(_out(args))


def _out_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be (or be created as) a writable results folder, or None."""
    if folder.exists() and not folder.is_dir():
        return f"--out {folder} is a file, not a folder"
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"--out {folder} cannot be created: {existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {folder} is not writable: no write permission in {existing}"
    return None


def _out(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else Path("reports") / "study" / args.study.stem


def _list_jobs(jobs: Sequence) -> int:
    for job in jobs:
        print(f"{job.id}  {job.describe()}")
    print(f"{len(jobs)} job(s); the study file is valid")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridverify")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_study_parser(sub)
    args = parser.parse_args(["study", *(sys.argv[1:] if argv is None else argv)])
    return study_command(args)

"""The `gridverify verify` and `gridverify report` commands (argument parsing lives in `gridverify.cli`).

Bad input is reported before any work starts: an unknown case, a malformed region, a case without a
trained surrogate, an output folder that cannot be written. The certificate is written atomically at the
end, so a run that fails or is killed leaves no certificate that looks complete.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from gridverify.deadline import Deadline
from gridverify.grid.data import GridError
from gridverify.grid.families import BALANCE
from gridverify.reports.report import ReportLockedError, report_lock, write_report
from gridverify.specs import Region
from gridverify.specs.certificate import VERDICTS, Certificate, CertificateError
from gridverify.surrogate.case import Case, CaseFolder, SurrogateError, load_case, open_case
from gridverify.verify.run import DEFAULT_TOLERANCES, RegionWarning, VerifyConfig, out_of_memory, verify

EXIT_VERIFIED, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


class InputError(ValueError):
    """Bad command-line input; the message says what and where."""


def run_verify(args: argparse.Namespace, started: float | None = None) -> int:
    """``gridverify verify``; ``--timeout`` counts from ``started`` (``time.monotonic()``; default: process
    start, as for the command itself)."""
    if started is None:
        from gridverify.deadline import process_start

        started = process_start()
    try:
        if args.out is not None:
            _check_out(args.out)
        config = _config(args, started)
        case, region = _case_and_region(args.case, args.region, args.surrogate)
        out = args.out or Path("reports") / case.name
        _check_out(out)
    except InputError as err:
        print(f"gridverify verify: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    config = replace(config, timeout_s=_verify_budget(args.timeout, started))  # reading the case counts too
    print(
        f"verifying {case.name} over {region.describe()} ({args.timeout:g} s wall budget) ...",
        file=sys.stderr,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RegionWarning)
        try:
            cert = verify(case, region, args.constraints, config, progress=not args.quiet, log=_stage_line)
        except (MemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            print(
                f"gridverify verify: out of memory within --memory-gb {config.memory_gb:g} before any answer "
                f"({message}); nothing written: raise --memory-gb or select fewer --constraints",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    for w in caught:
        print(f"gridverify verify: warning: {w.message}", file=sys.stderr)
    undefined = [r.name for r in cert.records if math.isnan(r.bound) or math.isnan(r.worst)]
    if undefined:
        print(
            f"gridverify verify: case {case.name}: {len(undefined)} constraint(s) have NaN bounds (e.g. "
            f"{undefined[0]}): the grid or surrogate gives undefined numbers; nothing written",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(
            f"gridverify verify: output folder {out} cannot be created: {err.strerror or err}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        with report_lock(out):  # one run per folder: the certificate and its report together
            path = cert.save(out / "certificate.json")  # the answer first; figures while time is left
            report = write_report(cert, out, case, deadline=_command_deadline(args.timeout, started))
    except ReportLockedError as err:
        print(f"gridverify verify: {err}; nothing written", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary_table(cert))
    print(f"certificate: {path}\nreport:      {report}")
    return exit_code(cert, strict=args.strict)


def _case_and_region(name: str, region_text: str | None, surrogate: Path | None) -> tuple[Case, Region]:
    """The case, its grid, surrogate and region, each read now: a problem with any is bad input, named by
    the file it is in (a grid file's problem is never blamed on the surrogate)."""
    try:
        case = open_case(name, surrogate)
    except ValueError as err:
        raise InputError(str(err)) from None
    try:
        case.data  # noqa: B018 - read now: a broken grid file is bad input
    except GridError as err:
        raise InputError(f"grid: {err}") from None
    try:
        case.surrogate  # noqa: B018 - read now: a missing or broken surrogate is bad input
    except SurrogateError as err:
        raise InputError(f"surrogate: {err}") from None
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"case {case.name}: surrogate cannot be read: {err}") from None
    try:
        return case, case.region if region_text is None else Region.parse(region_text, case.data)
    except ValueError as err:
        raise InputError(str(err) if region_text is None else f"--region {region_text!r}: {err}") from None


def _check_out(folder: Path) -> None:
    """Raise `InputError` unless ``folder`` is, or can be created as, a writable folder; creates nothing."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {folder} is not writable: it is a file")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"output folder {folder} is not writable: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"output folder {folder} is not writable: no write permission in {existing}")


def _config(args: argparse.Namespace, started: float) -> VerifyConfig:
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise InputError(f"--timeout must be > 0 and finite (wall seconds), got {args.timeout}")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise InputError(f"--tolerance must be >= 0 and finite, got {args.tolerance}")
    _check_device(args.device)
    try:
        return VerifyConfig(
            tolerance=args.tolerance,
            tolerances={**DEFAULT_TOLERANCES, **_family_tolerances(args.family_tolerance)},
            timeout_s=_verify_budget(args.timeout, started),
            device=args.device,
            replay=not args.no_replay,
            memory_gb=getattr(args, "memory_gb", VerifyConfig.memory_gb),
        )
    except ValueError as err:
        raise InputError(str(err)) from None


def _command_deadline(timeout_s: float, started: float) -> Deadline:
    """When ``--timeout`` (wall seconds from ``started``, a ``time.monotonic()`` instant) runs out, less a
    second for writing ``report.md`` and exiting."""
    return Deadline(started, timeout_s - 1.0)


def _left(timeout_s: float, started: float) -> float:
    """Seconds of ``--timeout`` left (``started``: ``time.monotonic()`` where it counts from)."""
    return timeout_s - (time.monotonic() - started)


def _verify_budget(timeout_s: float, started: float) -> float:
    """``--timeout`` is wall seconds for the whole command from ``started`` (process start for the command):
    `verify` gets what is left after start-up, less 10 % (at least 5 s, at most 20 s, at most half) for
    writing the certificate and the report (figures not started by the deadline are left out:
    `write_report`; a small case's take 2-4 s; case1354's certificate, report.md and exit about 18 s)."""
    left = _left(timeout_s, started)
    return max(left - min(20.0, max(0.1 * timeout_s, 5.0), 0.5 * timeout_s), 1.0)


def _check_device(device: str) -> None:
    """Raise `InputError` unless torch can compute on ``device`` and read the result back (``meta`` holds
    no numbers, an absent accelerator fails here)."""
    try:
        probe = torch.ones(2, dtype=torch.float64, device=device)
        value = float((probe * 2).sum().cpu().item())
    except Exception as err:  # torch raises RuntimeError, NotImplementedError, AssertionError, ...
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"--device {device!r} is not available: {message}") from None
    if value != 4.0:
        raise InputError(f"--device {device!r} is not available: it does not compute (2 * 2 gave {value})")


def _family_tolerances(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        family, sep, value = item.partition("=")
        try:
            out[family.strip()] = float(value)
        except ValueError:
            raise InputError(f"--family-tolerance {item!r}: expected FAMILY=NUMBER") from None
        if not sep:
            raise InputError(f"--family-tolerance {item!r}: expected FAMILY=NUMBER")
    return out


def summary_table(cert: Certificate) -> str:
    """Per family: verdict counts, worst found and certified bound, as aligned text."""
    head = f"{'family':<14}{'verified':>9}{'violated':>9}{'unknown':>9}{'worst found':>14}{'bound':>12}  unit"
    rows = [head, "-" * len(head)]
    for fam, r in cert.summary().items():
        unit = cert.family(fam)[0].unit
        rows.append(
            f"{fam:<14}{r['verified']:>9.0f}{r['violated']:>9.0f}{r['unknown']:>9.0f}"
            f"{r['worst_found']:>14.4g}{r['worst_bound']:>12.4g}  {unit}"
        )
    counts = cert.counts()
    rows.append(f"{len(cert.records)} constraints in {cert.seconds:.1f} s: " + ", ".join(
        f"{counts[v]} {v}" for v in VERDICTS))  # fmt: skip
    return "\n".join(rows)


def _stage_line(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def exit_code(cert: Certificate, strict: bool = False) -> int:
    """1 if a constraint is violated, else 3 if one is unknown, else 0; the balance residuals (the
    surrogate's self-consistency, reported with their certified interval) count only with ``strict``."""
    verdicts = [r.verdict for r in cert.records if strict or r.family not in BALANCE]
    if "violated" in verdicts:
        return EXIT_VIOLATED
    return EXIT_UNKNOWN if "unknown" in verdicts else EXIT_VERIFIED


def run_report(args: argparse.Namespace) -> int:
    try:
        cert = Certificate.load(args.certificate)
        out = args.out or args.certificate.parent
        _check_out(out)
    except (CertificateError, InputError) as err:
        print(f"gridverify report: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    case = _case_if_shipped(cert.case)
    try:
        path = write_report(cert, out, case)
    except (ReportLockedError, OSError) as err:
        print(f"gridverify report: {err}; report not written", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(summary_table(cert))
    print(f"report: {path}")
    return 0


def _case_if_shipped(name: str) -> CaseFolder | None:
    try:
        return load_case(name)
    except ValueError:
        return None

"""The `gridverify verify` and `gridverify report` commands (argument parsing lives in `gridverify.cli`).

Bad input is reported before any work starts: an unknown case, a malformed region, a case without a
trained surrogate, an output folder that cannot be written. The certificate is written atomically at the
end, so a run that fails or is killed leaves no certificate that looks complete.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import torch

from gridverify.surrogate import Region
from gridverify.surrogate.case import Case, load_case
from gridverify.verify.certificate import VERDICTS, Certificate, CertificateError
from gridverify.verify.report import write_report
from gridverify.verify.run import RegionWarning, VerifyConfig, verify
from gridverify.verify.sources import FileCase, open_case

EXIT_VERIFIED, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_UNKNOWN = 0, 1, 2, 3


class InputError(ValueError):
    """Bad command-line input; the message says what and where."""


def run_verify(args: argparse.Namespace) -> int:
    try:
        case, region = _case_and_region(args.case, args.region, args.surrogate)
        out = _writable(args.out or Path("reports") / case.name)
        config = _config(args)
    except InputError as err:
        print(f"gridverify verify: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"verifying {case.name} over {region.describe()} ({config.timeout_s:g} s budget) ...", file=sys.stderr
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RegionWarning)
        cert = verify(case, region, args.constraints, config, progress=not args.quiet)
    for w in caught:
        print(f"gridverify verify: warning: {w.message}", file=sys.stderr)
    path = cert.save(out / "certificate.json")
    report = write_report(cert, out, case)
    print(summary_table(cert))
    print(f"certificate: {path}\nreport:      {report}")
    return exit_code(cert)


def _case_and_region(
    name: str, region_text: str | None, surrogate: Path | None
) -> tuple[Case | FileCase, Region]:
    try:
        case = open_case(name, surrogate)
    except ValueError as err:
        raise InputError(str(err)) from None
    try:
        case.surrogate  # noqa: B018 - read now: a missing or broken surrogate is bad input
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"case {case.name}: surrogate cannot be read: {err}") from None
    if region_text is None:
        return case, case.region
    try:
        return case, Region.parse(region_text, case.data)
    except ValueError as err:
        raise InputError(f"--region {region_text!r}: {err}") from None


def _writable(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe"):
            pass
    except OSError as err:
        raise InputError(f"output folder {folder} is not writable: {err.strerror or err}") from None
    return folder


def _config(args: argparse.Namespace) -> VerifyConfig:
    if not args.timeout > 0:
        raise InputError(f"--timeout must be > 0, got {args.timeout}")
    if not args.tolerance >= 0:
        raise InputError(f"--tolerance must be >= 0, got {args.tolerance}")
    try:
        torch.empty(1, device=args.device)
    except (RuntimeError, AssertionError) as err:
        raise InputError(f"--device {args.device!r} is not available: {err}") from None
    try:
        return VerifyConfig(
            tolerance=args.tolerance,
            tolerances=_family_tolerances(args.family_tolerance),
            timeout_s=args.timeout,
            device=args.device,
            replay=not args.no_replay,
        )
    except ValueError as err:
        raise InputError(str(err)) from None


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


def exit_code(cert: Certificate) -> int:
    counts = cert.counts()
    if counts["violated"]:
        return EXIT_VIOLATED
    return EXIT_UNKNOWN if counts["unknown"] else EXIT_VERIFIED


def run_report(args: argparse.Namespace) -> int:
    try:
        cert = Certificate.load(args.certificate)
        out = _writable(args.out or args.certificate.parent)
    except (CertificateError, InputError) as err:
        print(f"gridverify report: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    case = _case_if_shipped(cert.case)
    path = write_report(cert, out, case)
    print(summary_table(cert))
    print(f"report: {path}")
    return 0


def _case_if_shipped(name: str) -> Case | None:
    try:
        return load_case(name)
    except ValueError:
        return None

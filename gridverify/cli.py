"""The `gridverify` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from gridverify import demo

DESCRIPTION = """\
gridverify proves, or refutes with a concrete load, that a neural-network surrogate of AC optimal power
flow respects the grid's physics over a whole region of loads, using sound linear bounds (IBP, CROWN,
alpha-CROWN) on one nonlinear computation graph.
"""


LIGHT = ("demo", "vnnlib")  # commands that need neither pandapower nor the grid packages


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (None when absent or when help is asked before it)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token == "--threads":
            skip = True
        elif not token.startswith("-"):
            return token
        elif token in ("-h", "--help"):
            return None
    return None


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; for a light command (`LIGHT`) only the light subcommands, so that a VNN-COMP
    instance does not pay for importing pandapower at every process start."""
    parser = argparse.ArgumentParser(prog="gridverify", description=DESCRIPTION)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: bound computations on these graphs are many small tensor "
        "ops, and more threads mostly add synchronisation; raise it for very large cases)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="bound a line's power flow behind a small network with IBP, CROWN and alpha-CROWN",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--radius", type=float, default=0.1, help="half-width of the load box in pu (default 0.1)")
    if command not in LIGHT:
        from gridverify.study.cli import add_study_parser
        from gridverify.surrogate.cli import add_train_parser

        _add_verify(sub)
        _add_report(sub)
        add_train_parser(sub)
        add_study_parser(sub)
    v = sub.add_parser(
        "vnnlib",
        help="decide a VNN-COMP instance (ONNX model + VNN-LIB property) and write the result file",
        description="Decide whether any input in the VNN-LIB box drives the ONNX model into the unsafe set. "
        "Writes unsat (proved), sat with the counterexample (checked in float64 and onnxruntime), unknown, "
        "timeout or error to --out, and prints it.",
    )
    v.add_argument("model", type=Path, help="ONNX model")
    v.add_argument("prop", type=Path, help="VNN-LIB property (.vnnlib or .vnnlib.gz)")
    v.add_argument("--timeout", type=float, default=60.0, help="seconds for this instance (default 60)")
    v.add_argument("--out", type=Path, help="result file (VNN-COMP format); default: print only")
    v.add_argument("--progress", action="store_true", help="show a progress bar during branch and bound")
    return parser


VERIFY_HELP = """\
Verify a case's neural-network surrogate over a region of loads: for every constraint of the AC power
flow (power balance at every bus, thermal limits at both ends of every branch, angle differences,
voltage and generator limits), prove that it holds for EVERY load in the region (verified), or find a
load where it fails (violated, re-checked in float64 and replayed in pandapower's power flow), or give
a certified interval [worst found, bound] when the time budget ends first (unknown).

Writes DIR/certificate.json (versioned JSON, see docs/certificate.md) and DIR/report.md with figures.

Exit codes: 0 every constraint verified; 1 some constraint violated; 3 none violated but some unknown;
2 bad input (unknown case, malformed region, unwritable output folder, ...).
"""


def _add_verify(sub: argparse._SubParsersAction) -> None:
    from gridverify.grid import FAMILIES

    p = sub.add_parser(
        "verify",
        help="verify a case's surrogate against every AC power-flow constraint over a load region",
        description=VERIFY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "case",
        help="a shipped case name (see cases/, e.g. case14), a case folder, or a grid file "
        "(PGLib/MATPOWER .m, pandapower .json) given with --surrogate",
    )
    p.add_argument(
        "--surrogate", type=Path, help="surrogate weights (surrogate.pt as `gridverify train` writes)"
    )
    p.add_argument(
        "--region",
        help="load region: '+-10%%' (each load within 10%% of nominal), '0.9:1.1' (factor range); "
        "default: the case's training region",
    )
    p.add_argument(
        "--constraints",
        nargs="+",
        metavar="FAMILY",
        choices=[f for f, _ in FAMILIES],
        help="constraint families to verify (default: all): " + ", ".join(f for f, _ in FAMILIES),
    )
    p.add_argument("--tolerance", type=float, default=1e-4, help="violation tolerance in each family's unit")
    p.add_argument(
        "--family-tolerance",
        action="append",
        default=[],
        metavar="FAMILY=T",
        help="a family's own tolerance, e.g. p_balance=0.01 (repeatable; units: pu, rad, pu^2 for thermal)",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for all constraints (default 120)")
    p.add_argument("--device", default="cpu", help="torch device for the bounds (cpu, cuda; default cpu)")
    p.add_argument("--out", type=Path, help="output folder (default reports/<case>)")
    p.add_argument("--no-replay", action="store_true", help="skip the pandapower replay of violations")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="re-render report.md and figures from a certificate.json",
        description="Re-render the report (report.md and figures) of a certificate written by "
        "`gridverify verify`, into the certificate's folder or --out.",
    )
    p.add_argument("certificate", type=Path, help="certificate.json written by gridverify verify")
    p.add_argument("--out", type=Path, help="output folder (default: the certificate's folder)")


def _verify(args: argparse.Namespace) -> int:
    from gridverify.verify.cli import run_verify

    return run_verify(args)


def _report(args: argparse.Namespace) -> int:
    from gridverify.verify.cli import run_report

    return run_report(args)


def _vnnlib(args: argparse.Namespace) -> int:
    from gridverify.vnncomp import SETTINGS, InstanceResult, verify_instance

    start = time.perf_counter()
    try:
        result = verify_instance(
            args.model, args.prop, args.timeout, replace(SETTINGS, progress=args.progress)
        )
    except (
        Exception
    ) as err:  # the competition wants a result file whatever happened; the reason goes to stderr
        print(f"gridverify vnnlib: {type(err).__name__}: {err}", file=sys.stderr)
        result = InstanceResult("error", time.perf_counter() - start, detail=str(err))
    if args.out is not None:
        args.out.write_text(result.text())
    print(f"{result.status} ({result.seconds:.2f} s{', ' + result.detail if result.detail else ''})")
    return 0 if result.status != "error" else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(_command(argv)).parse_args(argv)
    if args.threads < 1:
        print("gridverify: --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    if args.command == "vnnlib":
        return _vnnlib(args)
    if args.command == "verify":
        return _verify(args)
    if args.command == "report":
        return _report(args)
    if args.command == "train":
        return args.func(args)
    if args.command == "study":
        return args.handler(args)
    if args.command == "demo":
        if args.radius < 0:
            print("gridverify demo: --radius must be >= 0", file=sys.stderr)
            return 2
        rows = demo.run_demo(args.radius)
        print("active power flow p_from (pu) over the load box, certified bounds vs samples:")
        print(demo.format_rows(rows))
        certified = rows[:3]
        sampled = rows[3]
        sound = all(r.lower <= sampled.lower and r.upper >= sampled.upper for r in certified)
        print("every certified bound contains the sampled range:", "yes" if sound else "NO")
        return 0 if sound else 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

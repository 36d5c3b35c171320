"""The `gridverify` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gridverify import demo

DESCRIPTION = """\
gridverify proves, or refutes with a concrete load, that a neural-network surrogate of AC optimal power
flow respects the grid's physics over a whole region of loads, using sound linear bounds (IBP, CROWN,
alpha-CROWN) on one nonlinear computation graph.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gridverify", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="bound a line's power flow behind a small network with IBP, CROWN and alpha-CROWN",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("--radius", type=float, default=0.1, help="half-width of the load box in pu (default 0.1)")
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


def _vnnlib(args: argparse.Namespace) -> int:
    from gridverify.bab import SearchConfig
    from gridverify.vnncomp import InstanceResult, verify_instance

    start = time.perf_counter()
    try:
        result = verify_instance(args.model, args.prop, args.timeout, SearchConfig(progress=args.progress))
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
    args = _parser().parse_args(argv)
    if args.command == "vnnlib":
        return _vnnlib(args)
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

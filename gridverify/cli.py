"""The `gridverify` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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

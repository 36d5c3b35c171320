"""Constraints of a shipped case searched alone, the way `gridverify verify` decides its open rows.

For each constraint named (``p_balance[bus 34]``, say): the region's LP-tightened base and the screen
(`gridverify.verify.run.screen`, a 3% falsifier share of a 120 s budget) over the whole case, then the
constraint's rows that the screen leaves open each searched alone for at most ``--seconds`` (one
`_in_chunks` call per row), with the decide settings of ``VerifyConfig`` and
of each ``--compare`` baseline (`bench/verify.py`'s ``BASELINES``), in this process. Printed per row and
run: its verdict, worst found, certified bound, domains and the seconds until it settled (the time of its
last bound; ``-`` when still open). One thread, as in `bench/verify.py`; rows near the tolerance are
where the decide stage's speed shows.

    python bench/rows.py CASE "CONSTRAINT" ["CONSTRAINT" ...] [--seconds S] [--compare root-alpha ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gridverify.deadline import Deadline
from gridverify.surrogate.case import load_case
from gridverify.verify import VerifyConfig
from gridverify.verify.run import Paused, _in_chunks, prepare, screen, tightened_base

sys.path.insert(0, str(Path(__file__).parent))
from verify import BASELINES  # bench/verify.py, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", help="shipped case name or case folder")
    parser.add_argument("constraints", nargs="+", help='constraint names, e.g. "q_balance[bus 41]"')
    parser.add_argument("--seconds", type=float, default=40.0, help="per row, at most (default 40)")
    parser.add_argument(
        "--compare", nargs="+", choices=sorted(BASELINES), default=[], help="baselines to run beside"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = load_case(args.case)
    constraints, graph, rows = prepare(case, None)
    names = [c.name for c in constraints]
    missing = [n for n in args.constraints if n not in names]
    if missing:
        parser.error(f"{args.case} has no constraints {missing} (names look like {names[0]!r})")
    box = case.region.box()
    plain = VerifyConfig(timeout_s=120.0)
    thr = torch.tensor([plain.tolerance_of(constraints[k].family) for k in rows.owner])
    base = tightened_base(graph, box, rows, plain, Deadline.after(plain.timeout_s))
    screened = screen(graph, box, rows, thr, plain, Deadline.after(0.03 * plain.timeout_s), base=base)
    print("| constraint | row | run | verdict | worst found | bound | domains | settled s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.constraints:
        k = names.index(name)
        open_rows = [
            i for i in range(len(rows)) if rows.owner[i] == k and screened[i].verdict.value == "unknown"
        ]
        if not open_rows:
            print(f"| {name} | | screen | every row decided by the screen | | | | |")
            continue
        for label, make in [("this version", lambda c: c), *((b, BASELINES[b]) for b in args.compare)]:
            config = make(plain)
            for i in open_rows:  # each row its own search and deadline: `seconds` counts from its start
                results = list(screened)
                _in_chunks(
                    graph, box, rows, results, [i], thr, Deadline.after(args.seconds), config, False, base,
                    cap_s=args.seconds, paused=Paused(0.0),
                )  # fmt: skip
                r = results[i]
                settled = "-" if r.verdict.value == "unknown" else f"{r.seconds:.1f}"
                print(
                    f"| {name} | {'+' if rows.sign[i] > 0 else '-'} | {label} | {r.verdict.value} "
                    f"| {r.worst:.6g} | {r.upper:.6g} | {r.domains} | {settled} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

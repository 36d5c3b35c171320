"""`gridverify verify` on shipped cases: verdict counts per family, certified-bound statistics and time.

Each case runs in this process after one warm-up import; budgets are per case (all constraints together).
The screening stage (one CROWN pass + sampled loads) is timed separately, so its share of the decisions
and of the time is visible next to the branch-and-bound stage. With ``--compare``, each case also runs
with the baselines named (in this process, same budget): ``release`` the last release's scheduling (branch
and bound batches by largest gap over all rows, a quarter of the budget kept for narrowing violated rows),
``no-lp`` without LP tightening of the surrogate's boundary neurons (``tighten_share=0``), ``no-relations``
without the relations between neurons in branch and bound (`gridverify.bab.relations`), ``no-lp-cut``
without the LP finish of branch-and-bound domains (`gridverify.bab.lp_cut`), ``chunk-64`` with
every branch-and-bound run on up to 64 rows (`VerifyConfig.row_alone_s = 0`), ``restart`` with every
decide round searching its rows anew (`VerifyConfig.keep_share = 0`), ``no-refresh`` without the CROWN
refresh of intermediate intervals after neuron splits, ``before-resume`` both (the settings before
either), ``before-patterns`` one LP finish program per domain with at most the bounding time (no sign
patterns of its undecided relus, ``lp_patterns=1, lp_cut=1``), ``narrow-patterns`` the decide searches'
LP finish (sign patterns, 4x) in the narrowing searches too, ``before-screen`` the screen's full
falsifier pass on every open row, violated ones too (``climb_violated``) and as long as the screen's share
allows, ``before-climb-share`` that full pass on the undecided rows only, as long as the screen's share allows
(``climb_share``), ``root-alpha`` each decide search's root alpha-CROWN (20 steps) and 10 alpha-beta steps
per batch (`gridverify.verify.run.ROOT`, `BOUND`), ``lp-one-thread`` the LP finish in one thread
(`SearchConfig.lp_threads`; the default is one per core, up to 4), ``before-lp-finish`` the
settings before the LP finish (no LP finish, filtered BBPS branching, rows alone only while each can have
10 s); the runs' counts,
thermal unknowns and the median over balance rows of (certified bound / worst found) are printed side by side.

With ``--memory-gb`` the runs (screen and verify) get that budget (`VerifyConfig.memory_gb`); the peak RSS
of the process so far is printed after each case.

    python bench/verify.py [case14 case118 ...] [--timeout S] [--region TEXT] [--memory-gb G]
                           [--compare release no-lp no-relations no-lp-cut chunk-64 restart no-refresh
                                      before-resume before-patterns narrow-patterns before-screen
                                      before-climb-share root-alpha lp-one-thread
                                      before-lp-finish]
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

import numpy as np
import torch

from gridverify.bab import Branching, SearchConfig
from gridverify.deadline import Deadline
from gridverify.surrogate.case import available_cases, load_case
from gridverify.verify import VerifyConfig, verify
from gridverify.verify.cli import summary_table
from gridverify.verify.run import prepare, screen


def screening(case, config: VerifyConfig) -> tuple[int, int, int, float]:
    """(rows the screen proves, rows it finds violated, rows, seconds) for all families of ``case``."""
    _, graph, rows = prepare(case, None)
    start = time.monotonic()
    thresholds = torch.full((len(rows),), config.tolerance, dtype=torch.float64)
    until = Deadline.after(config.attack_share * config.timeout_s)
    screened = screen(graph, case.region.box(), rows, thresholds, config, until)
    verdicts = [r.verdict.value for r in screened]
    seconds = time.monotonic() - start
    return verdicts.count("verified"), verdicts.count("violated"), len(screened), seconds


def balance_ratio(cert) -> float:
    """Median over balance rows (p and q) of certified bound / worst found (1: closed; nan: none)."""
    ratios = [
        r.bound / r.worst for r in cert.records if r.family in ("p_balance", "q_balance") and r.worst > 0
    ]
    return float(np.median(ratios)) if ratios else float("nan")


BASELINES = {
    "release": lambda c: replace(c, narrow_share=0.25, search=replace(c.search, in_turns=False)),
    "no-lp": lambda c: replace(c, tighten_share=0.0),
    "no-relations": lambda c: replace(c, search=replace(c.search, relations=False)),
    "no-lp-cut": lambda c: replace(c, search=replace(c.search, lp_cut=0.0)),
    "chunk-64": lambda c: replace(c, row_alone_s=0.0),
    "restart": lambda c: replace(c, keep_share=0.0),
    "no-refresh": lambda c: replace(c, search=replace(c.search, refresh_intermediate=None)),
    "before-resume": lambda c: replace(
        c, keep_share=0.0, search=replace(c.search, refresh_intermediate=None)
    ),
    "before-patterns": lambda c: replace(c, search=replace(c.search, lp_patterns=1, lp_cut=1.0)),
    "narrow-patterns": lambda c: replace(c, narrow_lp=(c.search.lp_cut, c.search.lp_patterns)),
    "before-screen": lambda c: replace(c, climb_violated=True, climb_share=1.0),
    "before-climb-share": lambda c: replace(c, climb_share=1.0),
    "root-alpha": lambda c: replace(
        c, search=replace(c.search, root=SearchConfig().root, bound=SearchConfig().bound)
    ),
    "lp-full": lambda c: replace(c, search=replace(c.search, lp_affine=False)),
    "lp-one-thread": lambda c: replace(c, search=replace(c.search, lp_threads=1)),
    "before-lp-finish": lambda c: replace(
        c, row_alone_s=10.0, search=replace(c.search, lp_cut=0.0, branching=Branching.FILTERED)
    ),
}


def line(label: str, cert, wall: float) -> str:
    counts = cert.counts()
    thermal = sum(1 for r in cert.records if r.family.startswith("thermal") and r.verdict == "unknown")
    return (
        f"| {label} | {counts['verified']} | {counts['violated']} | {counts['unknown']} | {thermal} "
        f"| {balance_ratio(cert):.4g} | {wall:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help="shipped case names or case folders (default: all shipped)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case (default 120)")
    parser.add_argument("--region", help="load region (default: each case's training region)")
    parser.add_argument(
        "--memory-gb", type=float, default=VerifyConfig.memory_gb, help="memory budget (GiB) of each run"
    )
    parser.add_argument(
        "--compare", nargs="+", choices=sorted(BASELINES), default=[], help="baselines to run beside"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.cases or available_cases():
        case = load_case(name)
        config = VerifyConfig(timeout_s=args.timeout, memory_gb=args.memory_gb)
        proved, violated, rows, screen_s = screening(case, config)
        start = time.perf_counter()
        cert = verify(case, args.region, config=config)
        wall = time.perf_counter() - start
        head = f"{name}: {len(cert.records)} constraints, {rows} rows"
        screen_text = f"the screen proves {proved} rows and finds {violated} violated in {screen_s:.1f} s"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"\n== {head}; {screen_text}; verify wall {wall:.1f} s (budget {args.timeout:g} s); "
            f"peak RSS so far {peak:.2f} GiB"
        )
        print(summary_table(cert))
        unknown = sum(r.verdict == "unknown" for r in cert.records)
        ratio = balance_ratio(cert)
        print(f"unknown {unknown}; median over balance rows of certified bound / worst found {ratio:.2f}")
        if not args.compare:
            continue
        lines = [line("this version", cert, wall)]
        for label in args.compare:
            start = time.perf_counter()
            old = verify(case, args.region, config=BASELINES[label](config))
            lines.append(line(label, old, time.perf_counter() - start))
        print("| run | verified | violated | unknown | thermal unknown | balance bound/found | wall s |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(lines))


if __name__ == "__main__":
    main()

"""AC-OPF labellers side by side: IPOPT with exact derivatives (`gridverify.grid.opf`, warm-started from the
nearest solved load) against PYPOWER's ``runopf``, on the same loads, one after another in this process.

For each PGLib case: the objective at the nominal load from both, against PGLib's published baseline
(BASELINE.md of PGLib-OPF v23.07); then ``--samples`` loads drawn uniformly in ``--region`` (seeded) and
solved by both: seconds per OPF (mean, wall, one process; IPOPT's also split into the loads it solved and
those it failed on, which end at its iteration limits), failures, and the largest relative objective
difference where both converged. The NLP's one-time build (CasADi derivatives, IPOPT instance) is timed
apart.

    python bench/opf.py [case14 case118 case300] [--samples 50] [--region +-10%] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from gridverify.grid.data import from_matpower
from gridverify.grid.opf import AcOpf, Labeller
from gridverify.specs.region import Region, nominal_load
from gridverify.surrogate.dataset import _Solver

PGLIB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pglib"
BASELINE = {  # PGLib's AC objective ($/h): BASELINE.md of v23.07 (5 digits; 14 and 118: 7 digits, as in
    # tests/grid/test_reference_opf.py)
    "case14": ("pglib_opf_case14_ieee.m", 2178.08),
    "case39": ("pglib_opf_case39_epri.m", 1.3842e5),
    "case118": ("pglib_opf_case118_ieee.m", 97213.61),
    "case300": ("pglib_opf_case300_ieee.m", 5.6522e5),
}


def bench(name: str, samples: int, region_text: str, seed: int) -> str:
    """One table row for case ``name``."""
    path = PGLIB / BASELINE[name][0]
    data = from_matpower(path)
    start = time.perf_counter()
    opf = AcOpf(data)
    build_s = time.perf_counter() - start
    runopf = _Solver.of(path, data)
    nominal = nominal_load(data)
    base = BASELINE[name][1]
    ipopt_nominal = opf.solve(nominal)
    pypower_nominal = runopf.label(nominal)
    loads = Region.parse(region_text, data).sample(samples, np.random.default_rng(seed))
    labeller = Labeller(opf)
    ipopt, ipopt_s = _timed(lambda x: labeller.solve(x), loads)
    pypower, pypower_s = _timed(runopf.label, loads)
    ipopt_cost = np.array([s.cost if s.converged else np.nan for s in ipopt])
    pypower_cost = np.array([np.nan if r is None else r[-1] for r in pypower])
    both = np.isfinite(ipopt_cost) & np.isfinite(pypower_cost)
    agree = np.abs(ipopt_cost[both] - pypower_cost[both]) / np.abs(pypower_cost[both])
    fail_i, fail_p = int(np.isnan(ipopt_cost).sum()), int(np.isnan(pypower_cost).sum())
    fail_both = int((np.isnan(ipopt_cost) & np.isnan(pypower_cost)).sum())
    ok = np.isfinite(ipopt_cost)
    failed_s = f"{ipopt_s[~ok].mean():.2f}" if (~ok).any() else "-"
    split = f"{ipopt_s[ok].mean():.4f} / {failed_s}"
    ipopt_s, pypower_s = ipopt_s.mean(), pypower_s.mean()
    nominal_cells = (
        f"{ipopt_nominal.cost:.2f} ({_rel(ipopt_nominal.cost, base):.1e}) | "
        f"{_cost(pypower_nominal):.2f} ({_rel(_cost(pypower_nominal), base):.1e})"
    )
    return (
        f"| {name} | {base:.2f} | {nominal_cells} | {samples} | {ipopt_s:.4f} | {split} | {pypower_s:.3f} "
        f"| {pypower_s / ipopt_s:.0f}x | {fail_i} ({100 * fail_i / samples:.1f}%) "
        f"| {fail_p} ({100 * fail_p / samples:.1f}%) | {fail_both} "
        f"| {agree.max() if agree.size else float('nan'):.1e} | {build_s:.2f} |"
    )


def _timed(solve, loads: np.ndarray) -> tuple[list, np.ndarray]:
    """Solutions of every load and the wall seconds of each."""
    out, seconds = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for x in loads:
            start = time.perf_counter()
            out.append(solve(x))
            seconds.append(time.perf_counter() - start)
    return out, np.array(seconds)


def _cost(label: np.ndarray | None) -> float:
    return float("nan") if label is None else float(label[-1])


def _rel(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference)


HEADER = (
    "| case | PGLib objective | IPOPT at nominal (rel. err.) | runopf at nominal (rel. err.) | loads "
    "| IPOPT s/OPF | IPOPT s/OPF solved / failed | runopf s/OPF | speed-up | IPOPT failed | runopf failed "
    "| both failed | max rel. objective diff | IPOPT build s |\n" + "|---" * 14 + "|"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("cases", nargs="*", help=f"of {', '.join(BASELINE)} (default case14 case118 case300)")
    parser.add_argument("--samples", type=int, default=50, help="loads per case (default 50)")
    parser.add_argument("--region", default="+-10%", help="load region (default +-10%%)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the loads (default 0)")
    args = parser.parse_args()
    args.cases = args.cases or ["case14", "case118", "case300"]
    unknown = sorted(set(args.cases) - set(BASELINE))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {', '.join(BASELINE)}")
    if not PGLIB.is_dir():
        raise SystemExit(f"PGLib cases not found at {PGLIB}")
    print(f"region {args.region}, seed {args.seed}, one process, loads solved one after another\n")
    print(HEADER)
    for name in args.cases:
        print(bench(name, args.samples, args.region, args.seed), flush=True)


if __name__ == "__main__":
    main()

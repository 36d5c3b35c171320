"""The falsifier against the search it replaced (`AttackConfig.legacy()`), same problems, same process.

Three sets of problems:

(a) ml4acopf 2023 (`../shared/data/ml4acopf_2023`, skipped when absent): per instance, every disjunct of
    the property as a margin (>= 0: a counterexample), searched in rounds until one is found or ``--cap``
    seconds pass; the best margin and the time to the first counterexample confirmed in float64 and
    onnxruntime (`gridverify.vnncomp`).
(b) the shipped cases' constraint rows (verify's rows, over each case's training region), the same budget
    (``--budget`` seconds) for both: old = the screen's 256 uniform loads and the centre, then the legacy
    search per row (rows past the budget keep the loads' value); new = `verify.run.screen`'s falsifier (the
    same loads, the rows' CROWN-line corners, the new search from each row's best loads, in two passes).
    Per balance row the worst violation found: how many rows the new search matches or beats, the median
    increase.
(c) random sigmoid / tanh / sin MLPs (8 inputs, 3 x 32) with planted counterexamples: the threshold of each
    output is just below the best of 100,000 uniform points, so a point above it
    exists; found = the search returns a point above it (float64).

    python bench/attack.py [--cap 10] [--cases case14 case118] [--skip ml4acopf cases mlps]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from bounds import N_IN, mlp

from gridverify.bab import AttackConfig, attack
from gridverify.deadline import Deadline
from gridverify.ir import from_onnx
from gridverify.specs import read_vnnlib
from gridverify.surrogate.case import load_case
from gridverify.verify import VerifyConfig
from gridverify.verify.run import OUTPUT, _pool, prepare, screen
from gridverify.vnncomp import _box, _confirm, _disjunct_rows, _rows

ML4ACOPF = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml4acopf_2023"
CONFIGS = {"old": AttackConfig.legacy(), "new": AttackConfig()}


def first_counterexample(model: Path, prop: Path, config: AttackConfig, cap: float) -> tuple[float, float]:
    """(best margin, seconds to the first confirmed counterexample or inf) within ``cap`` seconds."""
    graph, spec = from_onnx(model), read_vnnlib(prop)
    box, rows = _box(graph, spec), _rows(spec)
    index = _disjunct_rows(rows, np.arange(len(spec.disjuncts)))
    n = index.shape[0]
    c, thr = rows.c[index], rows.thr[index]
    lo, hi = (t.expand(n, *t.shape[1:]) for t in box)
    start = time.monotonic()
    cfg = replace(config, rounds=1_000_000)
    x, margin = attack(
        graph, graph.outputs[0][0], c, lo, hi, cfg, offset=thr, target=0.0, deadline=Deadline(start, cap)
    )
    best = int(margin.argmax())
    found = float(margin[best]) >= 0 and _confirm(graph, spec, model, x[best]) is not None
    return float(margin[best]), (time.monotonic() - start) if found else float("inf")


def ml4acopf(cap: float) -> None:
    if not ML4ACOPF.is_dir():
        print(f"(a) skipped: {ML4ACOPF} not found")
        return
    print(f"(a) ml4acopf 2023, {cap:g} s per instance and search")
    print(f"{'instance':<22} {'old margin':>12} {'old s':>7} {'new margin':>12} {'new s':>7}")
    for line in (ML4ACOPF / "instances.csv").read_text().split():
        onnx_rel, prop_rel, _ = line.split(",")
        res = {
            k: first_counterexample(ML4ACOPF / onnx_rel, ML4ACOPF / prop_rel, c, cap)
            for k, c in CONFIGS.items()
        }
        name = Path(prop_rel).stem
        cells = " ".join(f"{res[k][0]:>12.4g} {res[k][1]:>7.2f}" for k in CONFIGS)
        print(f"{name:<22} {cells}")


def case_rows(name: str, budget_s: float) -> None:
    case = load_case(name)
    constraints, graph, rows = prepare(case, None)
    lo, hi = case.region.box()
    balance = [i for i, k in enumerate(rows.owner) if constraints[k].family in ("p_balance", "q_balance")]
    spec = rows.spec[balance]
    n = len(balance)
    start = time.monotonic()
    x = _pool(lo, hi, VerifyConfig().samples)
    pool = (graph.forward(x)[OUTPUT].reshape(x.shape[0], -1) @ spec.T).max(0).values
    lo_n, hi_n, until = lo.expand(n, -1), hi.expand(n, -1), Deadline(start, budget_s)
    _, legacy = attack(graph, OUTPUT, spec, lo_n, hi_n, CONFIGS["old"], deadline=until)
    old = torch.maximum(pool, legacy)
    old_s = time.monotonic() - start
    start = time.monotonic()
    thr = torch.full((n,), 1e-4, dtype=torch.float64)
    new = torch.tensor(
        [r.worst for r in screen(graph, (lo, hi), spec, thr, VerifyConfig(), Deadline(start, budget_s))]
    )
    new_s = time.monotonic() - start
    gain = (new - old).tolist()
    ratio = statistics.median((new / old.clamp_min(1e-12)).tolist())
    print(
        f"{name}: {n} balance rows; new >= old on {sum(g >= 0 for g in gain)}/{n} rows "
        f"({sum(g >= -1e-8 for g in gain)}/{n} within 1e-8 pu); "
        f"median increase {statistics.median(gain):.4g} pu (median ratio {ratio:.3f}), largest loss "
        f"{-min(0.0, min(gain)):.3g} pu; "
        f"largest found old {float(old.max()):.4g} new {float(new.max()):.4g} pu; "
        f"old {old_s:.1f} s, new {new_s:.1f} s"
    )


def planted(trials: int) -> None:
    rows_found = {k: 0 for k in CONFIGS}
    total = 0
    gen = torch.Generator().manual_seed(1)
    for act in ("sigmoid", "tanh", "sin"):
        for seed in range(trials):
            graph = mlp(act, 32, seed)
            centre = torch.rand(1, N_IN, generator=gen, dtype=torch.float64)
            lo, hi = centre - 0.5, centre + 0.5
            x = lo + (hi - lo) * torch.rand(100_000, N_IN, generator=gen, dtype=torch.float64)
            y = graph.forward(x)["y"]
            eye = torch.eye(y.shape[1], dtype=torch.float64)
            thr = y.max(0).values - 1e-6 * (1 + y.max(0).values.abs())
            m = eye.shape[0]
            for key, config in CONFIGS.items():
                _, v = attack(graph, "y", eye, lo.expand(m, -1), hi.expand(m, -1), config)
                rows_found[key] += int((v > thr).sum())
            total += m
    shares = ", ".join(f"{k} {v}/{total} ({100 * v / total:.1f}%)" for k, v in rows_found.items())
    print(f"(c) planted counterexamples found: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cap", type=float, default=10.0, help="seconds per ml4acopf instance and search")
    parser.add_argument("--cases", nargs="*", default=["case14", "case118"], help="shipped cases for (b)")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per case and search in (b)")
    parser.add_argument("--trials", type=int, default=20, help="random MLPs per activation in (c)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ml4acopf", "cases", "mlps"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "ml4acopf" not in args.skip:
        ml4acopf(args.cap)
    if "cases" not in args.skip:
        print("(b) balance rows of the shipped cases, worst violation found")
        for name in args.cases:
            case_rows(name, args.budget)
    if "mlps" not in args.skip:
        planted(args.trials)


if __name__ == "__main__":
    main()

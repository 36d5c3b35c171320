"""Tightening the boundary neurons of a whole problem: LP (`gridverify.bab.lp_tighten`) against relu branch
and bound (`maximise` on the graph cut at each boundary node, as `gridverify.bab.tighten` runs it), on the
same neurons and the same wall time.

For every boundary neuron of the problem's rows: CROWN's interval, the LP's (with the relu layers above
refined by LP first), branch and bound's (all ends at once, as much time as the LP took), and a lower
estimate of the true range (the falsifier's best points on each end). Printed: widths (median, sum) and
the median excess over the falsifier's range.

    python bench/lp_tighten.py case118 [--budget 60]
    python bench/lp_tighten.py 118_ieee_prop2 [--folder ../shared/data/ml4acopf_2023]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from gridverify.bab import AttackConfig, SearchConfig, attack, boundary_neurons, maximise
from gridverify.bab.domains import Problem
from gridverify.bab.lp_tighten import lp_base
from gridverify.bounds import crown

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml4acopf_2023"


def load(name: str, folder: Path):
    """(graph, box, spec rows, output name) of a shipped case (all rows) or an ml4acopf instance."""
    if name.startswith("case"):
        from gridverify.surrogate.case import load_case
        from gridverify.verify.run import OUTPUT, prepare

        case = load_case(name)
        _, graph, rows = prepare(case, None)
        return graph, case.region.box(), rows.spec, OUTPUT
    from gridverify.ir import from_onnx
    from gridverify.specs import read_vnnlib
    from gridverify.vnncomp import _box, _rows

    net = name.split("_prop")[0]
    graph = from_onnx(folder / f"onnx/{net}_ml4acopf.onnx")
    spec = read_vnnlib(folder / f"vnnlib/{name}.vnnlib")
    return graph, _box(graph, spec), _rows(spec).c, graph.outputs[0][0]


def ends(problem: Problem, z: int, rows: torch.Tensor) -> torch.Tensor:
    """(2k, n_z): +e_r then -e_r for the neurons ``rows`` of node z."""
    k = rows.numel()
    c = torch.zeros(2 * k, problem.graph.nodes[z].size, dtype=problem.lower.dtype)
    c[torch.arange(k), rows] = 1.0
    c[k + torch.arange(k), rows] = -1.0
    return c


def stats(name: str, lo: torch.Tensor, hi: torch.Tensor, ref: torch.Tensor, seconds: float) -> str:
    width = hi - lo
    excess = (width / ref.clamp(min=1e-9)).median()
    return (
        f"| {name} | {seconds:.1f} | {float(width.median()):.4g} | {float(width.sum()):.4g} "
        f"| {float(excess):.3g} |"
    )


def unstable(graph, root, base) -> str:
    """Per relu node: how many inputs straddle 0 under CROWN's intervals and under the LP's."""
    parts = []
    for node in graph.nodes:
        z = node.inputs[0] if node.op == "relu" else None
        if z is None or root[z] is None:
            continue
        count = [int(((iv[0] < 0) & (iv[1] > 0)).sum()) for iv in (root[z], (base or root)[z] or root[z])]
        parts.append(f"node {z}: {count[0]} -> {count[1]}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "problem", help="a shipped case (case14, ...) or an ml4acopf instance (118_ieee_prop2)"
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--budget", type=float, default=60.0, help="LP seconds (default 60)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    graph, box, spec, output = load(args.problem, args.folder)
    problem = Problem.make(graph, box, output)
    g, box = problem.graph, (problem.lower, problem.upper)
    targets = boundary_neurons(problem, spec)
    print(f"{args.problem}: boundary neurons { ({z: int(r.numel()) for z, r in targets.items()}) }")
    start = time.perf_counter()
    root = crown(g, box, problem.output, spec).intervals
    crown_s = time.perf_counter() - start
    start = time.perf_counter()
    base = lp_base(graph, box, spec, output, budget_s=args.budget)
    lp_s = time.perf_counter() - start
    print(f"unstable relu inputs, CROWN -> LP: {unstable(g, root, base)}")
    print("| method | seconds | median width | total width | median width / falsifier's |")
    print("|---|---|---|---|---|")
    for z, rows in targets.items():
        c = ends(problem, z, rows)
        cut = replace(g, outputs=(("boundary", z),))
        k = rows.numel()
        _, found = attack(
            cut,
            "boundary",
            c,
            box[0].expand(2 * k, -1),
            box[1].expand(2 * k, -1),
            AttackConfig(restarts=8, steps=30),
        )
        ref = found[:k] + found[k:]
        c_lo, c_hi = (t.reshape(-1)[rows] for t in root[z])  # type: ignore[index]
        print(stats(f"CROWN (node {z})", c_lo, c_hi, ref, crown_s))
        tight = base[z] if base is not None and base[z] is not None else root[z]
        l_lo, l_hi = (t.reshape(-1)[rows] for t in tight)  # type: ignore[union-attr]
        print(stats(f"LP (node {z})", l_lo, l_hi, ref, lp_s))
        start = time.perf_counter()
        cfg = SearchConfig(timeout_s=lp_s, refresh_intermediate=True)
        res = maximise(cut, box, c, output="boundary", config=cfg)
        b_hi = torch.tensor([r.upper for r in res[:k]], dtype=torch.float64)
        b_lo = -torch.tensor([r.upper for r in res[k:]], dtype=torch.float64)
        print(
            stats(
                f"relu BaB (node {z})",
                torch.maximum(b_lo, c_lo),
                torch.minimum(b_hi, c_hi),
                ref,
                time.perf_counter() - start,
            )
        )
        print(stats(f"falsifier (node {z}, lower estimate)", -found[k:], found[:k], ref, 0.0))


if __name__ == "__main__":
    sys.exit(main())

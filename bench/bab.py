"""What each part of GenBaB buys: specifications decided and time, for

    (a) alpha-CROWN only, (b) BaB with midpoint splits and width-based neuron choice,
    (c) BaB with BBPS neuron choice (midpoint splits), (d) BBPS with pre-optimised branching points,

on sigmoid, tanh and sin MLPs and a product-heavy (power-flow-like) graph. Each specification is
``y_k <= threshold_k`` with the threshold a little above the best value PGD finds (a fraction ``--margin``
of the gap between it and the root CROWN bound), so that alpha-CROWN alone rarely decides it. Neuron
splitting only (input splitting off), same budget per problem. All variants run in this process.

    python bench/bab.py [--timeout 20] [--margin 0.1] [--width 32]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bounds import N_IN, mlp, product_graph

from gridverify.bab import AttackConfig, Branching, SearchConfig, Verdict, attack, maximise
from gridverify.bounds import crown
from gridverify.ir import Graph


def problems(width: int) -> list[tuple[str, Graph]]:
    return [(f"{a} mlp {width}x3", mlp(a, width)) for a in ("sigmoid", "tanh", "sin")] + [
        (f"products {width // 2}", product_graph(width // 2))
    ]


def thresholds(graph: Graph, box: tuple[torch.Tensor, torch.Tensor], margin: float) -> torch.Tensor:
    n_out = graph.nodes[graph.output_ids["y"]].size
    spec = torch.eye(n_out, dtype=torch.float64)
    lo, hi = box
    _, worst = attack(
        graph, "y", spec, lo.expand(n_out, -1), hi.expand(n_out, -1), AttackConfig(restarts=256, steps=100)
    )
    root = crown(graph, box).upper[0]
    return worst + margin * (root - worst)


VARIANTS = {
    "a alpha-CROWN": None,
    "b width+mid": dict(branching=Branching.WIDTH, split_tables=False),
    "c BBPS+mid": dict(branching=Branching.BBPS, split_tables=False),
    "d BBPS+table": dict(branching=Branching.BBPS, split_tables=True),
}


def run(
    graph: Graph, box: tuple, thr: torch.Tensor, variant: dict | None, timeout: float
) -> tuple[int, float]:
    spec = torch.eye(thr.shape[0], dtype=torch.float64)
    cfg = SearchConfig(timeout_s=timeout if variant else 0.0, input_split_max_dims=0)
    if variant:
        cfg = replace(cfg, **variant)
    start = time.perf_counter()
    res = maximise(graph, box, spec, threshold=thr, config=cfg)
    return sum(r.verdict is Verdict.VERIFIED for r in res), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per problem and variant")
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--eps", type=float, default=0.3)
    args = parser.parse_args()
    torch.manual_seed(0)
    centre = torch.rand(1, N_IN, dtype=torch.float64)
    box = (centre - args.eps, centre + args.eps)
    totals = {k: [0, 0.0] for k in VARIANTS}
    n_specs = 0
    print(f"| problem | {' | '.join(VARIANTS)} |\n|---|" + "---|" * len(VARIANTS))
    for name, graph in problems(args.width):
        thr = thresholds(graph, box, args.margin)
        n_specs += thr.shape[0]
        cells = []
        for key, variant in VARIANTS.items():
            decided, secs = run(graph, box, thr, variant, args.timeout)
            totals[key][0] += decided
            totals[key][1] += secs
            cells.append(f"{decided}/{thr.shape[0]} in {secs:.1f} s")
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    base = totals["b width+mid"]
    print(f"| total | {' | '.join(f'{d}/{n_specs} in {s:.1f} s' for d, s in totals.values())} |")
    print(f"| decided vs (b) | {' | '.join(f'{d / max(base[0], 1):.2f}x' for d, _ in totals.values())} |")


if __name__ == "__main__":
    main()

"""What each part of GenBaB buys: specifications decided and time, for

    (a) alpha-CROWN only, (b) BaB with midpoint splits and width-based neuron choice,
    (c) BaB with BBPS neuron choice (midpoint splits), (d) BBPS with pre-optimised branching points,
    (e) BBPS filtered (top-k candidates re-ranked by a true bound of their children) with branching points,

on sigmoid, tanh and sin MLPs, a product-heavy (power-flow-like) graph, the ACOPF constraint graphs of
PGLib cases (active-power balance and thermal rows, in a small box around PYPOWER's AC-OPF solution), and
shipped surrogates composed with their constraints (same rows, over the case's load region). Each
specification ``c^T y <= t`` appears once per ``--margins`` value m with ``t = worst + m (crown - worst)``
(``worst``: best PGD value, ``crown``: the root CROWN bound), so that small m need branch and bound and
large m only a tighter root. Neuron splitting only (input splitting off), the same budget per problem and
variant, all variants in this process (the machine is shared: timings are noisy, compare within one run).

    python bench/bab.py [--timeout 10] [--width 8] [--margins 0.1 0.3 0.6] [--only products]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from bounds import N_IN, mlp, product_graph

from gridverify.bab import AttackConfig, Branching, SearchConfig, Verdict, attack, maximise
from gridverify.bounds import crown
from gridverify.ir import Graph, GraphBuilder
from gridverify.surrogate import graft

Box = tuple[torch.Tensor, torch.Tensor]
PGLIB = Path("/work/shared/data/pglib")


def mlp_problems(width: int, eps: float) -> list[tuple[str, Graph, Box, torch.Tensor]]:
    torch.manual_seed(0)
    centre = torch.rand(1, N_IN, dtype=torch.float64)
    box = (centre - eps, centre + eps)
    eye = torch.eye(4, dtype=torch.float64)
    found = [(f"{a} mlp {width}x3", mlp(a, width), box, eye) for a in ("sigmoid", "tanh", "sin")]
    return [*found, (f"products {width // 2}", product_graph(width // 2), box, eye)]


def acopf_problem(case: str, rel: float, rows: int) -> tuple[str, Graph, Box, torch.Tensor]:
    """p_balance and thermal_from rows of a PGLib case as one graph of one input (all variables
    concatenated), box: the AC-OPF solution +- ``rel`` (relative; angles +- rel rad)."""
    from tests.grid.cases import compiled, reference_opf  # PYPOWER solution, cached compile

    data, point, _ = reference_opf(PGLIB / f"pglib_opf_{case}.m")
    problem, graph = compiled(data)
    values = {k: torch.as_tensor(v) for k, v in problem.inputs(point).items()}
    b = GraphBuilder()
    n = sum(v.numel() for v in values.values())
    x = b.input("x", (n,))
    feeds, at = {}, 0
    for name, _ in graph.inputs:
        k = values[name].numel()
        feeds[name], at = x[at : at + k], at + k
    out = graft(b, graph, feeds)
    picked = b.concat([out["p_balance"][:rows], out["thermal_from"][:rows]])
    g = b.build({"y": picked})
    centre = torch.cat([values[name] for name, _ in graph.inputs])[None]
    radius = rel * torch.maximum(centre.abs(), torch.full_like(centre, 1.0))
    return f"acopf {case}", g, (centre - radius, centre + radius), torch.eye(2 * rows, dtype=torch.float64)


def surrogate_problem(case_name: str, rows: int) -> tuple[str, Graph, Box, torch.Tensor]:
    """A shipped case's surrogate composed with its constraints (`gridverify.surrogate`): the first
    ``rows`` p_balance and thermal_from rows over the case's own load region."""
    from gridverify.surrogate import load_case

    case = load_case(case_name)
    b = GraphBuilder()
    lo, hi = case.region.box()
    x = b.input("x", (lo.shape[1],))
    out = graft(b, case.graph, {"load": x})
    g = b.build({"y": b.concat([out["p_balance"][:rows], out["thermal_from"][:rows]])})
    return f"surrogate {case_name}", g, (lo, hi), torch.eye(2 * rows, dtype=torch.float64)


def thresholds(graph: Graph, box: Box, spec: torch.Tensor, margins: list[float]) -> torch.Tensor:
    m = spec.shape[0]
    lo, hi = box
    _, worst = attack(
        graph, "y", spec, lo.expand(m, -1), hi.expand(m, -1), AttackConfig(restarts=256, steps=100)
    )
    root = crown(graph, box, spec=spec).upper[0]
    return torch.cat([worst + f * (root - worst) for f in margins])


VARIANTS = {
    "a alpha-CROWN": None,
    "b width+mid": dict(branching=Branching.WIDTH, split_tables=False),
    "c BBPS+mid": dict(branching=Branching.BBPS, split_tables=False),
    "d BBPS+table": dict(branching=Branching.BBPS, split_tables=True),
    "e filtered+table": dict(branching=Branching.FILTERED, split_tables=True),
}


def run(graph: Graph, box: Box, spec: torch.Tensor, thr: torch.Tensor, variant: dict | None, timeout: float):
    cfg = SearchConfig(timeout_s=timeout if variant else 0.0, input_split_max_dims=0)
    if variant:
        cfg = replace(cfg, **variant)
    start = time.perf_counter()
    res = maximise(graph, box, spec, threshold=thr, config=cfg)
    wrong = [r.spec for r in res if r.verdict is Verdict.VIOLATED]
    return sum(r.verdict is Verdict.VERIFIED for r in res), time.perf_counter() - start, wrong


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per problem and variant")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.1, 0.3, 0.6])
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--eps", type=float, default=0.1, help="MLP box half-width")
    parser.add_argument("--rel", type=float, default=0.02, help="ACOPF box: relative half-width")
    parser.add_argument("--cases", nargs="*", default=["case14_ieee"], help="PGLib constraint graphs")
    parser.add_argument("--surrogates", nargs="*", default=["case14"], help="shipped cases (cases/)")
    parser.add_argument("--only", default="", help="run problems whose name contains this")
    parser.add_argument("--variants", default="abcde", help="letters of the variants to run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    problems = mlp_problems(args.width, args.eps) + [acopf_problem(c, args.rel, 4) for c in args.cases]
    problems += [surrogate_problem(c, 4) for c in args.surrogates]
    variants = {k: v for k, v in VARIANTS.items() if k[0] in args.variants}
    totals = {k: [0, 0.0] for k in variants}
    n_specs = 0
    print(f"| problem | {' | '.join(variants)} |\n|---|" + "---|" * len(variants))
    for name, graph, box, rows in problems:
        if args.only not in name:
            continue
        thr = thresholds(graph, box, rows, args.margins)
        spec = rows.repeat(len(args.margins), 1)
        n_specs += thr.shape[0]
        cells = []
        for key, variant in variants.items():
            decided, secs, violated = run(graph, box, spec, thr, variant, args.timeout)
            totals[key][0] += decided
            totals[key][1] += secs
            cells.append(
                f"{decided}/{thr.shape[0]} in {secs:.1f} s" + (f" (violated {violated})" * bool(violated))
            )
        print(f"| {name} | {' | '.join(cells)} |", flush=True)
    print(f"| total | {' | '.join(f'{d}/{n_specs} in {s:.1f} s' for d, s in totals.values())} |")
    base = totals.get("b width+mid", [1, 1.0])
    print(f"| decided vs (b) | {' | '.join(f'{d / max(base[0], 1):.2f}x' for d, _ in totals.values())} |")


if __name__ == "__main__":
    main()

"""Compiling ACOPF constraints from sympy: node count, build and compile time, forward time per case.

The graph size must not grow with the number of buses (the compiler vectorises expressions of the same
shape). Cases: pandapower's IEEE / PEGASE networks, and PGLib files from ``../shared/data/pglib`` when
that folder exists.

    python bench/compile.py
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandapower.networks as pn
import torch

from gridverify.grid import build_acopf, compile_acopf, from_matpower, from_pandapower

PGLIB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pglib"


def cases() -> list[tuple[str, Callable]]:
    found = [
        (c, lambda c=c: from_pandapower(getattr(pn, c)()))
        for c in ("case14", "case30", "case57", "case118", "case300", "case1354pegase")
    ]
    names = ("case14_ieee", "case118_ieee", "case300_ieee", "case1354_pegase", "case2869_pegase")
    found += [
        (f"pglib {c}", lambda c=c: from_matpower(PGLIB / f"pglib_opf_{c}.m"))
        for c in names
        if (PGLIB / f"pglib_opf_{c}.m").exists()
    ]
    return found


def measure(load: Callable) -> tuple[int, int, int, float, float, float]:
    data = load()
    t0 = time.perf_counter()
    problem = build_acopf(data)
    t1 = time.perf_counter()
    graph = compile_acopf(problem)
    t2 = time.perf_counter()
    rng = np.random.default_rng(0)
    x = {k: torch.as_tensor(rng.uniform(0.9, 1.1, (256, len(s)))) for k, s in problem.variables.items()}
    graph.forward(x)
    t3 = time.perf_counter()
    for _ in range(5):
        graph.forward(x)
    fwd_ms = (time.perf_counter() - t3) / 5 * 1e3
    return len(data.ids.bus), len(data.ids.branch), len(graph.nodes), t1 - t0, t2 - t1, fwd_ms


def main() -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    print("| case | buses | branches | nodes | build s | compile s | forward 256 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, load in cases():
        buses, branches, nodes, build, comp, fwd = measure(load)
        print(
            f"| {name} | {buses} | {branches} | {nodes} | {build:.2f} | {comp:.2f} | {fwd:.1f} |", flush=True
        )


if __name__ == "__main__":
    main()

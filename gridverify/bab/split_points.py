"""Pre-optimised branching points (GenBaB): where to split a neuron's interval [l, u].

For a unary op and every cell ``[l, u]`` of a grid over ``[-5, 5]`` (step 0.1), the table holds the point
p, among 15 evenly spaced interior candidates, that minimises the total area between the op's
default upper and lower relaxation lines over the two halves:

    area(a, b) = (uw - lw) (b^2 - a^2) / 2 + (ub - lb) (b - a),   lines lw x + lb <= f <= uw x + ub on [a, b]

At branch-and-bound time, ``lookup`` takes the largest grid cell inside ``[l, u]`` (so the stored point lies
strictly inside the interval) and falls back to the midpoint where no cell fits (intervals outside the grid
or narrower than a step). The tables ship with the package (``gridverify/bab/tables/``, the upper triangle
in float32, about 20 kB per op), written by ``python -m gridverify.bab.split_points``; an op without a
shipped table gets one built on first use (seconds to minutes) and kept in memory.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from gridverify.ops import REGISTRY, get_op

GRID_LO, GRID_HI, STEP, CANDIDATES = -5.0, 5.0, 0.1, 15
VERSION = 1


@dataclass(frozen=True)
class SplitTable:
    """``points[i, j]``: best split point of ``[GRID_LO + i*step, GRID_LO + j*step]`` (NaN unless i < j)."""

    op: str
    step: float
    points: Tensor


@cache
def tabulated_ops() -> tuple[str, ...]:
    """Unary nonlinear ops defined on the whole grid (ops with a restricted domain are left out)."""
    unary = [(n, op) for n, op in REGISTRY.items() if op.kind == "nonlinear" and op.arity == 1]
    return tuple(sorted(n for n, op in unary if op.check_domain is None and op.sample_params == ({},)))


def _area(op_name: str, a: Tensor, b: Tensor) -> Tensor:
    op = get_op(op_name)
    r = op.relaxation((a,), (b,), op.init_alpha((a,), (b,)))
    return (r.uw[0] - r.lw[0]) * (b * b - a * a) / 2 + (r.ub - r.lb) * (b - a)


def build(op_name: str, step: float = STEP) -> SplitTable:
    """Grid search of the area-minimising split point for every cell (float64)."""
    n = round((GRID_HI - GRID_LO) / step) + 1
    grid = GRID_LO + step * torch.arange(n, dtype=torch.float64)
    i, j = torch.triu_indices(n, n, offset=1)
    lo, hi = grid[i].unsqueeze(1), grid[j].unsqueeze(1)
    t = torch.arange(1, CANDIDATES + 1, dtype=torch.float64) / (CANDIDATES + 1)
    p = lo + t * (hi - lo)
    with torch.no_grad():
        total = _area(op_name, lo.expand_as(p), p) + _area(op_name, p, hi.expand_as(p))
    best = p.gather(1, total.nan_to_num(nan=torch.inf).argmin(1, keepdim=True)).squeeze(1)
    points = torch.full((n, n), torch.nan, dtype=torch.float64)
    points[i, j] = best
    return SplitTable(op_name, step, points)


TABLE_DIR = Path(__file__).parent / "tables"


def _path(op_name: str) -> Path:
    return TABLE_DIR / f"split_points_{op_name}_v{VERSION}.pt"


def save(t: SplitTable) -> Path:
    """Write the upper triangle (float32) next to the package."""
    n = t.points.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    path = _path(t.op)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"step": t.step, "n": n, "upper": t.points[i, j].to(torch.float32)}, path)
    return path


@cache
def table(op_name: str) -> SplitTable:
    """The op's table: shipped with the package, else built now (kept in memory)."""
    path = _path(op_name)
    if not path.exists():
        return build(op_name)
    data = torch.load(path, weights_only=True)
    n = int(data["n"])
    points = torch.full((n, n), torch.nan, dtype=torch.float64)
    i, j = torch.triu_indices(n, n, offset=1)
    points[i, j] = data["upper"].to(torch.float64)
    return SplitTable(op_name, float(data["step"]), points)


def lookup(t: SplitTable, lower: Tensor, upper: Tensor) -> Tensor:
    """Split points for intervals [lower, upper] (any shape): the table's point of the largest grid cell
    inside the interval, else the midpoint."""
    n = t.points.shape[0]
    i = torch.ceil((lower - GRID_LO) / t.step - 1e-9).clamp(0, n - 1).long()
    j = torch.floor((upper - GRID_LO) / t.step + 1e-9).clamp(0, n - 1).long()
    pts = t.points.to(lower.device)[i, j].to(lower.dtype)
    inside = (i < j) & (lower >= GRID_LO) & (upper <= GRID_HI) & (pts > lower) & (pts < upper)
    return torch.where(inside & torch.isfinite(pts), pts, 0.5 * (lower + upper))


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the branching-point tables of every tabulated op.")
    parser.add_argument("--ops", nargs="*", default=list(tabulated_ops()), help="ops to build (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.ops:
        t = build(name)
        print(f"{name}: {int(torch.isfinite(t.points).sum())} cells -> {save(t)}", flush=True)


if __name__ == "__main__":
    main()

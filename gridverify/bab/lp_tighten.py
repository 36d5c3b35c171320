"""Certified intervals for a whole box, computed once: the boundary neurons by LP, shared by every row.

`lp_base` takes the boundary neurons of a set of specification rows (`gridverify.bab.tighten`: the outputs
of the piecewise-linear part that reach the smooth ops, such as an ACOPF surrogate's pre-sigmoid outputs and
the branch angle differences built from them), bounds them and the unstable inputs of the relu layers above
them by the LP relaxation of the relu network (`gridverify.bounds.lp`, certified by its Lagrangian dual),
and returns the narrowed intervals as a ``base`` for `crown` and `maximise`: each holds over the whole box.

Results are cached in memory and, with ``cache_dir``, on disk (one small ``.pt`` file per key), keyed by a
sha256 of the part of the lowered graph the LP reads (ops, shapes and every constant's bytes), the box, the
target neurons and the settings (a result is reused when it had at least `REUSE` of the budget asked for),
so jobs of a study on the same case and region reuse them.
A cached result computed for other rows is still sound for these: every interval holds over the box.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from gridverify.bab.domains import Problem
from gridverify.bab.tighten import boundary_neurons
from gridverify.bounds.core import Interval
from gridverify.bounds.crown import crown
from gridverify.bounds.lp import LpConfig, lp_intervals, program_nodes
from gridverify.const import Const
from gridverify.ir.graph import Graph

DEFAULT_CACHE = Path.home() / ".cache" / "gridverify" / "tighten"
_FORMAT = "lp-base-2"
_MEMORY: OrderedDict[str, tuple[float, dict[int, Interval]]] = OrderedDict()  # key -> (budget, result)
_MEMORY_SIZE = 8
REUSE = 0.8  # a cached result is reused when it had at least this share of the budget asked for

Base = tuple[Interval | None, ...]
DEFAULT_LP = LpConfig()


def lp_base(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    output: str | int | None = None,
    budget_s: float = 30.0,
    config: LpConfig = DEFAULT_LP,
    cache_dir: Path | None = None,
) -> Base | None:
    """Intervals (per node of the lowered graph, ``(1, *S)``; None where not narrowed) that hold over the
    box, with the boundary neurons of the rows of ``spec`` (m, n_out) tightened by LP within ``budget_s``
    seconds; None when the rows have no boundary neurons."""
    start = time.monotonic()
    problem = Problem.make(graph, box, output)
    spec = spec.to(dtype=problem.lower.dtype, device=problem.lower.device).reshape(spec.shape[0], -1)
    targets = {z: r.cpu() for z, r in boundary_neurons(problem, spec).items()}
    if not targets:
        return None
    key = _key(problem, targets, config)
    found = _cached(key, cache_dir, budget_s)
    if found is None:
        found = _compute(problem, targets, config, budget_s - (time.monotonic() - start))
        _store(key, found, cache_dir, budget_s)
    if not found:
        return None
    like = problem.lower
    moved = {i: (lo.to(like), hi.to(like)) for i, (lo, hi) in found.items()}
    return tuple(moved.get(i) for i in range(len(problem.graph.nodes)))


def _compute(
    problem: Problem, targets: dict[int, Tensor], config: LpConfig, budget_s: float
) -> dict[int, Interval]:
    """node -> narrowed interval (float64, CPU), for the nodes the LP narrowed."""
    start = time.monotonic()
    box = (problem.lower.cpu().to(torch.float64), problem.upper.cpu().to(torch.float64))
    graph = problem.graph
    # the LP reads the intervals of the targets' ancestors: CROWN on the graph cut at the last target (the
    # rows' own bounds are the screen's job; on case300's 3722 rows they took 17 s against 0.4 s)
    cut = replace(graph, outputs=(("boundary", max(targets)),))
    before = list(crown(cut, box, "boundary").intervals)
    before += [None] * (len(graph.nodes) - len(before))
    left = budget_s - (time.monotonic() - start)
    after = lp_intervals(graph, targets, before, config, left)
    return {
        i: (a[0].detach().clone(), a[1].detach().clone())
        for i, (a, b) in enumerate(zip(after, before))
        if a is not None and a is not b
    }


def graph_fingerprint(graph: Graph, nodes: list[int] | None = None) -> str:
    """sha256 (hex) of a graph's structure and every constant's bytes (of ``nodes`` only, with their ids,
    when given)."""
    h = hashlib.sha256()
    for i in range(len(graph.nodes)) if nodes is None else nodes:
        node = graph.nodes[i]
        h.update(repr((i, node.op, node.inputs, node.shape)).encode())
        for name, value in node.params:
            h.update(name.encode())
            if isinstance(value, Const):
                t = value.tensor
                parts = [t.coalesce().indices(), t.coalesce().values()] if t.is_sparse else [t]
                h.update(repr((str(t.dtype), tuple(t.shape))).encode())
                for p in parts:
                    h.update(p.contiguous().numpy().tobytes())
            else:
                h.update(repr(value).encode())
    if nodes is None:
        h.update(repr((graph.inputs, graph.outputs)).encode())
    return h.hexdigest()


def _key(problem: Problem, targets: dict[int, Tensor], config: LpConfig) -> str:
    """What the result depends on: the subgraph the LP reads (node ids included), the box, the target
    neurons and the settings; not the rows or the graph below the targets, so runs on other constraint
    families of the same surrogate and region share it. The budget is stored with the result: a result
    computed with at least `REUSE` of the budget asked for is reused."""
    h = hashlib.sha256(_FORMAT.encode())
    h.update(graph_fingerprint(problem.graph, program_nodes(problem.graph, set(targets))[0]).encode())
    h.update(repr(config).encode())
    h.update(repr({z: r.tolist() for z, r in sorted(targets.items())}).encode())
    for t in (problem.lower, problem.upper):
        h.update(t.detach().cpu().to(torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def _cached(key: str, cache_dir: Path | None, budget_s: float) -> dict[int, Interval] | None:
    if key in _MEMORY and _MEMORY[key][0] >= REUSE * budget_s:
        _MEMORY.move_to_end(key)
        return _MEMORY[key][1]
    if cache_dir is None:
        return None
    path = Path(cache_dir) / f"{key}.pt"
    if not path.exists():
        return None
    try:
        stored = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    if float(stored.get("budget_s", 0.0)) < REUSE * budget_s:
        return None
    found = {int(i): (lo, hi) for i, (lo, hi) in stored["intervals"].items()}
    _remember(key, found, float(stored["budget_s"]))
    return found


def _store(key: str, found: dict[int, Interval], cache_dir: Path | None, budget_s: float) -> None:
    _remember(key, found, budget_s)
    if cache_dir is None:
        return
    folder = Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.{time.time_ns()}.tmp"
        torch.save({"key": key, "budget_s": float(budget_s), "intervals": found}, tmp)
        tmp.replace(folder / f"{key}.pt")  # atomic: concurrent jobs never read half a file
    except OSError:
        pass  # a cache that cannot be written only costs time


def _remember(key: str, found: dict[int, Interval], budget_s: float) -> None:
    _MEMORY[key] = (budget_s, found)
    _MEMORY.move_to_end(key)
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)


def clear_memory_cache() -> None:
    """Forget the in-memory results (tests; the disk cache stays)."""
    _MEMORY.clear()

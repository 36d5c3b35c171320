"""A domain's bound finished exactly over the piecewise-linear part of the graph.

A domain's bound is a backward pass from the output (`gridverify.bounds.crown.backward`). Where the pass
enters the piecewise-linear part of the graph (its leaves and the linear, relu and abs ops of them: the
input box and a surrogate's ReLU network, `gridverify.bounds.lp.piecewise_nodes`), the bound so far is a
linear function ``sum_j c_j . y_j + bias`` of the nodes pending there (`Frontier`). CROWN finishes it
through the relus' relaxation lines and the split constraints' multipliers (beta), which 10 optimiser steps
per domain leave far from their optimum; the linear program over the same part finishes it exactly: the
box, every linear map as equality rows, every relu by its triangle on the domain's interval, every neuron
within its interval on the domain (so the domain's splits are column bounds, no multiplier needed). Its
minimum is at least CROWN's for any alphas and betas below the frontier.

The balance rows of a surrogate + AC power flow graph need exactly that: the load enters them both
directly and through the network, so a split of the network's outputs constrains the load only through
the multipliers. case14 p_balance[bus 10] (worst found 0.0031 pu): after 6 s of search its 32 worst open
domains all held 0.0082; one CROWN pass with their parameters gave 0.010-0.019, the program from the
same pass 0.0014-0.0029 (16 ms a domain, 350 columns).

Deep in the tree a domain's program has few relus left whose sign its intervals leave open, and the
triangles of those few are what keeps its bound above the truth: the outputs a balance row reads (voltages
at both ends of a branch) are correlated through the network, and a triangle lets them move apart. Such a
domain gets one program per sign pattern of those relus (`_patterns`, up to ``SearchConfig.lp_patterns``
programs), each exact over the piecewise-linear part, and the smallest bound. case30 q_balance[bus 22]
(worst found 0.00965, tolerance 0.01): its worst domains after 15 s had one open relu and bounds
0.0102-0.0103; the two patterns' programs gave 0.0093-0.0096 in each. Alone, 1 thread: one program per
domain, still open at 60 s (0.01016); patterns with the programs' time capped at the batch's bounding time
(``SearchConfig.lp_cut`` 1), stuck at 0.0149 from 2 s (children keep their parent's finished bound until a
program of their own beats it, and three in four got none); patterns with the cap at 4, verified in 7.3 s.

A surrogate trained for verifiability keeps nearly every relu's sign over its region (case57's: all 192).
Where every relu / abs input of the program keeps one sign on the domains of the first batch, the program
is its affine collapse (`gridverify.bounds.lp.AffineShape`: the input's columns and the frontier's, one row
per frontier neuron, ``t - M x`` within a rounding margin of ``v``), which has the same minimum up to that
margin: a case57 balance row's program is 94 x 10 instead of 730 x 754, 2.1 ms a domain instead of 19
(same bounds to 6e-12). A later domain whose intervals leave a sign open gets the full program.

HiGHS (`highspy`) solves the program; only its row multipliers are used, through `dual_bound`, so the
result is certified whatever the solver returns (a time-limited solve gives a looser bound; a pattern the
domain rules out is proved empty by the solver's dual ray, `gridverify.bounds.lp.LpSolver`).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gridverify.bab.domains import Domains, Problem
from gridverify.bounds.crown import Frontier
from gridverify.bounds.lp import (
    PIECEWISE,
    AffineShape,
    ProgramShape,
    Shape,
    WarmSolver,
    const_value,
    piecewise_nodes,
    program_nodes,
)
from gridverify.deadline import Deadline
from gridverify.ir.graph import Graph

MAX_COLUMNS = 20_000
"""Programs with more columns are not solved (each domain's program gets its column bounds and chords
anew, in Python, and one solve)."""


@dataclass
class LpCut:
    """The piecewise-linear part of a problem's graph and the programs over it, built once per search."""

    problem: Problem
    nodes: frozenset[int]
    solve_s: float = 1.0  # time limit of one program
    share: float = 1.0  # of a batch's bounding time for its programs (`adapt`)
    patterns: int = 8  # most programs per domain: one per sign pattern of its undecided relu / abs neurons
    threads: int = 1  # workers solving domains' programs at once (`SearchConfig.lp_threads`)
    affine: bool = True  # the affine program where the relus keep their signs (`SearchConfig.lp_affine`)
    # frontier nodes -> [affine program, full program (built when first needed), whether the full fits]
    programs: dict[frozenset[int], list[Any]] = field(default_factory=dict)
    solvers: dict[int, list[WarmSolver]] = field(default_factory=dict)  # by id of the shape

    @staticmethod
    def of(
        problem: Problem, share: float = 1.0, patterns: int = 8, threads: int = 1, affine: bool = True
    ) -> LpCut | None:
        """None where the output itself is piecewise linear (CROWN's own pass is then the whole bound)."""
        nodes = piecewise_nodes(problem.graph)
        if problem.output in nodes:
            return None
        return LpCut(problem, nodes, share=share, patterns=patterns, threads=max(1, threads), affine=affine)

    def adapt(self, solved: int, gained: int, most: float) -> None:
        """After a batch: halve the programs' share of the time (down to 1/64) when fewer than a tenth of
        the ``solved`` programs narrowed their domain's gap by a tenth or more (``gained``), else double it
        (up to ``most``). Where the bound already sees the split constraints (case118 thermal rows: the
        cut bound of `gridverify.bab.relations`), programs cost half the search and gain nothing:
        thermal_from[branch 3] settles in 19 s without them and is still open at 25 s with a fixed share."""
        if solved:
            self.share = self.share / 2 if gained < 0.1 * solved else self.share * 2
            self.share = min(max(self.share, 1 / 64), most)

    def shapes(
        self, frontier: Frontier, d: Domains, which: Tensor
    ) -> tuple[AffineShape | None, Shape | None]:
        """(the affine program of the frontier's nodes, or None; the full one, or None when too large). The
        affine one (`AffineShape`) exists where every relu / abs input of the program keeps one sign on
        all of the domains ``which`` of the first call; a later domain where one does not gets the full."""
        assert frontier.coeffs is not None
        key = frozenset(frontier.coeffs)
        if key not in self.programs:
            graph = self.problem.graph
            order = program_nodes(graph, key)[0]
            size = sum(graph.nodes[i].size for i in order)
            small = size <= MAX_COLUMNS  # measured before any row is built (a conv's rows are many)
            found = _signs(graph, order, d, which) if self.affine else None
            affine = None
            if found is not None:
                ends = (self.problem.lower, self.problem.upper)
                lo, hi = (t.reshape(-1).to(torch.float64).cpu().numpy() for t in ends)
                signs, reach = found
                affine = AffineShape.of(graph, key, signs, np.maximum(np.abs(lo), np.abs(hi)), reach)
            full = ProgramShape.of(graph, key) if small and affine is None else None
            self.programs[key] = [affine, full, small]
        affine, full, small = self.programs[key]
        return affine, full

    def _full(self, frontier: Frontier) -> Shape | None:
        """The full program of the frontier's nodes, built when first needed (after `shapes`)."""
        assert frontier.coeffs is not None
        entry = self.programs[frozenset(frontier.coeffs)]
        if entry[1] is None and entry[2]:
            entry[1] = ProgramShape.of(self.problem.graph, frozenset(frontier.coeffs))
        full: Shape | None = entry[1]
        return full

    def solver(self, shape: Shape, worker: int = 0) -> WarmSolver:
        """Worker ``worker``'s solver of the programs of ``shape``."""
        solvers = self.solvers.setdefault(id(shape), [])
        while len(solvers) <= worker:  # the same shape, a HiGHS instance of its own
            solvers.append(WarmSolver(shape))
        return solvers[worker]

    def lower(self, frontier: Frontier, d: Domains, which: Tensor, until: Deadline) -> Tensor:
        """(len(which),) certified lower bounds of the pass that set ``frontier`` on the domains ``which``
        of ``d`` (whose intervals the pass used), in that order; -inf for those left when ``until`` passes
        or where there is no program. With ``threads`` > 1 the domains are dealt out in turn to that many
        workers, each solving its programs in its own HiGHS instances (HiGHS runs without Python's lock)."""
        out = torch.full((which.numel(),), -torch.inf, dtype=torch.float64)
        coeffs = frontier.coeffs
        if coeffs is None or frontier.bias is None or which.numel() == 0:
            return out
        affine, full = self.shapes(frontier, d, which)
        if affine is not None:
            kinked = self._bounds(affine.signs, d, which)
            fits = [
                affine.holds_on({j: (lo[k], hi[k]) for j, (lo, hi) in kinked.items()})
                for k in range(which.numel())
            ]
            if not all(fits):
                full = self._full(frontier)
            self._solve(affine, frontier, d, which, np.flatnonzero(fits), out, until)
            rest = np.flatnonzero(np.logical_not(fits))
        else:
            rest = np.arange(which.numel())
        if full is not None and rest.size:
            self._solve(full, frontier, d, which, rest, out, until)
        return out

    def _solve(
        self, shape: Shape, frontier: Frontier, d: Domains, which: Tensor, mine: np.ndarray, out: Tensor,
        until: Deadline,
    ) -> None:  # fmt: skip
        """Programs of ``shape`` on the domains ``which[mine]``, their bounds into ``out[mine]``."""
        if mine.size == 0:
            return
        assert frontier.coeffs is not None and frontier.bias is not None
        picked = which[torch.as_tensor(mine, device=which.device)]
        n = picked.numel()
        bounds = self._bounds(shape.order, d, picked)
        cost = np.zeros((n, shape.n_cols))
        for j, c in frontier.coeffs.items():
            col = shape.columns[j]
            cost[:, col : col + c[0, 0].numel()] += c[picked, 0].reshape(n, -1).cpu().numpy()
        bias = frontier.bias[picked, 0].to(torch.float64).cpu().numpy()
        values = out.numpy()
        workers = min(self.threads, n)

        def work(worker: int) -> None:
            solver = self.solver(shape, worker)
            for k in range(worker, n, workers):
                if until.remaining_s() <= 0:
                    return
                patterns = _patterns(
                    shape, {i: (lo[k], hi[k]) for i, (lo, hi) in bounds.items()}, self.patterns
                )
                # a domain's patterns are solved together, each given at least PATTERN_S (a time-limited
                # solve bounds its pattern loosely)
                values[mine[k]] = float(bias[k]) + min(
                    solver.lower(shape.on(p), cost[k], min(self.solve_s, max(until.remaining_s(), PATTERN_S)))
                    for p in patterns
                )

        if workers <= 1:
            work(0)
        else:
            for worker in range(workers):  # every worker's solvers exist before any thread starts
                self.solver(shape, worker)
            list(_pool(workers).map(work, range(workers)))

    def _bounds(
        self, nodes: Iterable[int], d: Domains, which: Tensor
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each node's flat interval on the domains ``which``: (n, size) lower and upper."""
        graph, n = self.problem.graph, which.numel()
        out = {}
        for i in nodes:
            node = graph.nodes[i]
            if node.op == "const":
                v = np.repeat(const_value(graph, i)[None], n, 0)
                out[i] = (v, v.copy())
                continue
            iv = (d.lower, d.upper) if node.op == "input" else d.intervals[i]
            if iv is None:
                inf = np.full((n, node.size), np.inf)
                out[i] = (-inf, inf)
                continue
            lo, hi = (t[which].reshape(n, -1).detach().to(torch.float64).cpu().numpy() for t in iv)
            out[i] = (lo, hi)
        return out


KEPT = 32
"""Most relu / abs neurons an affine program keeps (their signs open on the first batch's domains); more,
and the full program is solved."""


def _signs(
    graph: Graph, order: list[int], d: Domains, which: Tensor
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]] | None:
    """Per relu / abs input of the program ``order``: +1 / -1 per neuron where every domain ``which`` gives
    it that sign, else 0 (kept), and the largest ``|value|`` of its kept neurons over those domains; None
    where an interval is missing or more than `KEPT` neurons are kept."""
    signs, reach, kept = {}, {}, 0
    for i in order:
        node = graph.nodes[i]
        if node.op not in PIECEWISE:
            continue
        j = node.inputs[0]
        iv = d.intervals[j]
        if iv is None:
            return None
        lo, hi = (t[which].reshape(which.numel(), -1).to(torch.float64) for t in iv)
        up, down = (lo >= 0).all(0), (hi <= 0).all(0)
        sign = torch.where(up, 1.0, torch.where(down, -1.0, 0.0)).cpu().numpy()
        open_ = sign == 0
        kept += int(open_.sum())
        if kept > KEPT:
            return None
        far = torch.maximum(-lo, hi).amax(0).cpu().numpy()
        signs[j], reach[j] = sign, far[open_]
    return signs, reach


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(workers: int) -> ThreadPoolExecutor:
    """One pool of ``workers`` threads per process, kept for every search."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="lp-finish")
    return _POOLS[workers]


PATTERN_S = 0.02
"""Least time limit of each sign pattern's program once a domain's patterns are started."""


def _patterns(
    shape: Shape, bounds: dict[int, tuple[np.ndarray, np.ndarray]], most: int
) -> list[dict[int, tuple[np.ndarray, np.ndarray]]]:
    """``bounds`` split by the sign of each relu / abs input that straddles 0: every sign pattern when
    there are at most ``most`` patterns, else ``bounds`` alone. Each pattern bounds every such input to one
    side of 0, where its kink rows are exact; together the patterns cover the domain, so the smallest of
    their programs' bounds bounds the domain, exactly over the piecewise-linear part."""
    graph = shape.graph
    open_ = [
        (x, int(q))
        for x in sorted({graph.nodes[i].inputs[0] for i in shape.kinks})
        for q in np.flatnonzero((bounds[x][0] < 0) & (bounds[x][1] > 0))
    ]
    if not open_ or 2 ** len(open_) > most:
        return [bounds]
    out = []
    for signs in range(2 ** len(open_)):
        pattern = dict(bounds)
        for bit, (x, q) in enumerate(open_):
            lo, hi = pattern[x] = (pattern[x][0].copy(), pattern[x][1].copy())
            if signs >> bit & 1:
                lo[q] = 0.0
            else:
                hi[q] = 0.0
        out.append(pattern)
    return out

"""``maximise``: certified worst cases of many specifications at once, with boundary-neuron tightening.

For each specification row c (``spec`` is ``(m, n_out)``), ``maximise`` narrows the interval
``[worst found, certified upper bound]`` of ``max c^T y(x)`` over the box; with a ``threshold`` it decides
``c^T y <= threshold`` (`gridverify.bab.verdict`). One branch-and-bound search (`gridverify.bab.search`)
does the work. With ``SearchConfig.tighten``, specifications still open after a first search get rounds of
boundary-neuron tightening (`gridverify.bab.tighten`, which is handed this function for its own searches)
and a new search on the tightened intervals; each specification keeps the better bound and the better
witness of its searches. When the boundary intervals are what keeps every specification open
(`gridverify.bab.tighten.tighten_first`), tightening comes before any search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from gridverify.bab.config import SearchConfig
from gridverify.bab.domains import Problem
from gridverify.bab.search import Search
from gridverify.bab.tighten import boundary_neurons, tighten, tighten_first
from gridverify.bab.verdict import SpecResult, Verdict, decide
from gridverify.bounds.core import Interval
from gridverify.deadline import Deadline
from gridverify.ir.graph import Graph
from gridverify.ir.prune import prune


def maximise(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    threshold: float | Tensor | None = None,
    output: str | int | None = None,
    config: SearchConfig = SearchConfig(),
    base: tuple[Interval | None, ...] | None = None,
    closed: bool = False,
    starts: Tensor | None = None,
    deadline: Deadline | None = None,
) -> list[SpecResult]:
    """Certified ``[worst, upper]`` of ``max c^T y`` per row c of ``spec`` over the box (see module doc).

    ``starts`` (m, S, *S_in): points of the box the falsifier starts from for each row besides its own
    (the worst points an earlier search found, say).

    ``closed``: the unsafe set of a threshold is ``c^T y >= threshold`` (a proof needs the bound strictly
    below it; `decide`), else ``c^T y > threshold``. ``base``: intervals known to hold over the whole box,
    per node of the lowered graph (as `tighten` gives them). With ``config.tighten``, specifications the
    plain search leaves open get rounds of boundary-neuron tightening and a search on the tightened
    intervals (`gridverify.bab.tighten`).

    ``deadline``: when to stop (default: ``config.timeout_s`` from now). Its time is split from the moment
    of the call: the first search's share, the tightening rounds and every search's own time windows are
    shares of the time from here to its end."""
    deadline = Deadline.after(config.timeout_s) if deadline is None else deadline.restarted()
    p = Prepared.of(graph, box, spec, threshold, output, base)
    problem, spec, thr, base = p.problem, p.spec, p.thr, p.base
    m = spec.shape[0]
    plan = config.tighten
    targets = {} if plan is None else boundary_neurons(problem, spec)
    if plan is not None:
        count = sum(int(r.numel()) for r in targets.values())
        plan = plan if 0 < count <= plan.max_neurons else None
    if plan is None:
        return Search.start(problem, spec, thr, _rooted(config, deadline), base, deadline, closed, starts).go(
            deadline
        )
    results: list[SpecResult] | None = None
    if thr is None or not tighten_first(problem, spec, thr, base, targets):
        first = deadline.until(deadline.start + min(plan.after_s, 0.2 * deadline.timeout_s))
        results = Search.start(problem, spec, thr, _rooted(config, first), base, first, closed, starts).go(
            first
        )
    round_s, intervals = plan.round_s, base
    while True:
        todo = (
            list(range(m)) if results is None else [k for k, r in enumerate(results) if _open(r, thr, config)]
        )
        left = deadline.remaining_s()
        if results is not None and (not todo or left < 1.0):
            return results
        rows = torch.tensor(todo, device=spec.device)
        budget = min(round_s, 0.5 * left)
        tightened = tighten(problem, spec[rows], intervals, config, budget, plan.max_neurons, maximise)
        if tightened is None and results is not None:
            return results
        intervals = intervals if tightened is None else tightened
        until = time.monotonic() + plan.search_share * round_s
        if deadline.end - until < 2.0 * round_s:  # no room for another round: the search takes the rest
            until = deadline.end
        sub_thr = None if thr is None else thr[rows]
        sub = deadline.until(until)
        cfg = _rooted(config, sub)
        if results is None:  # tightened first: the caller's starts, and the first results
            results = Search.start(problem, spec, sub_thr, cfg, intervals, sub, closed, starts).go(sub)
            round_s *= 2
            continue
        best = torch.stack([results[k].witness for k in todo]).unsqueeze(1)
        more = Search.start(problem, spec[rows], sub_thr, cfg, intervals, sub, closed, best).go(sub)
        for k, r in zip(todo, more):
            results[k] = _merge(results[k], r, None if thr is None else float(thr[k]), closed)
        round_s *= 2


@dataclass(frozen=True)
class Prepared:
    """A search's problem on the part of the graph its rows read (`gridverify.ir.prune`: same function,
    smaller graph), its rows, thresholds (None: maximise) and base intervals."""

    problem: Problem
    spec: Tensor
    thr: Tensor | None
    base: tuple[Interval | None, ...] | None

    @staticmethod
    def of(
        graph: Graph,
        box: tuple[Tensor, Tensor],
        spec: Tensor,
        threshold: float | Tensor | None = None,
        output: str | int | None = None,
        base: tuple[Interval | None, ...] | None = None,
    ) -> Prepared:
        problem = Problem.make(graph, box, output)
        dtype = problem.lower.dtype
        spec = spec.to(dtype=dtype, device=problem.lower.device).reshape(spec.shape[0], -1)
        pruned = prune(problem.graph, problem.output, spec)
        if pruned is not None:
            base = pruned.intervals(base)
            problem = Problem.make(pruned.graph, (problem.lower, problem.upper), pruned.output)
            spec = pruned.spec
        thr = None if threshold is None else torch.as_tensor(threshold, dtype=dtype).expand(spec.shape[0])
        return Prepared(problem, spec, thr, base)


def begin(
    prepared: Prepared, config: SearchConfig, deadline: Deadline, starts: Tensor | None = None
) -> Search:
    """`maximise`'s search without tightening (``config.tighten`` is not read) on ``prepared``, stopped
    after its root: ``begin(...).go(deadline)`` answers as ``maximise`` does, and a later ``go`` goes on
    from where the last stopped (`Search`). ``deadline`` is the first ``go``'s: the root's shares are cut
    from it. The unsafe sets are open (``c^T y > threshold``)."""
    deadline = deadline.restarted()
    problem, spec, thr, base = prepared.problem, prepared.spec, prepared.thr, prepared.base
    return Search.start(problem, spec, thr, _rooted(config, deadline), base, deadline, False, starts)


ROOT_SHARE = 0.25
"""At most this share of a search's time goes to its root's alpha optimisation (every step's bounds are
sound, so stopping it early loses only tightness). Without the cap, the root of ml4acopf 118 prop2 (20 steps
over a graph whose sin, cos and product nodes all get optimised intermediate bounds) took 38 s of a search
given 10."""


def _rooted(config: SearchConfig, deadline: Deadline) -> SearchConfig:
    """``config`` for a search that ends at ``deadline``, its root's alpha optimisation capped at
    `ROOT_SHARE` of the time left."""
    cap = ROOT_SHARE * deadline.remaining_s()
    if config.root.timeout_s is not None:
        cap = min(cap, config.root.timeout_s)
    return replace(config, root=replace(config.root, timeout_s=cap))


def _open(r: SpecResult, thr: Tensor | None, config: SearchConfig) -> bool:
    if thr is None:
        return r.upper - r.worst > config.tolerance
    return r.verdict is Verdict.UNKNOWN


def _merge(a: SpecResult, b: SpecResult, thr: float | None, closed: bool) -> SpecResult:
    """One specification's results of two searches over the same box: the better of each bound."""
    upper, best = min(a.upper, b.upper), (a if a.worst >= b.worst else b)
    verdict = None if thr is None else decide(upper, best.worst, thr, closed)
    later = tuple(p for p in b.history if p[1] < (a.history[-1][1] if a.history else torch.inf))
    return SpecResult(
        a.spec,
        verdict,
        max(upper, best.worst),
        best.worst,
        best.witness,
        a.domains + b.domains,
        b.seconds,
        a.history + later,
        b.stopped,
    )

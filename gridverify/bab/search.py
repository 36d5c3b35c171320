"""The branch-and-bound loop: one search over many specifications at once (`Search`).

The root gets one alpha-CROWN pass for all specifications; then domains of all specifications are batched:
pick the ``batch`` domains with the largest bounds, split each (input splitting when the box has few
non-degenerate dimensions, GenBaB neuron splitting otherwise), bound the children (alpha and beta
optimised), drop children that are decided, repeat. The certified bound of a specification is the largest
bound over its open and dropped domains, so it is sound at every moment. `gridverify.bab.maximise` drives
it (and tightening between searches).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from tqdm import tqdm

from gridverify.bab import branching
from gridverify.bab.attack import AttackConfig, attack
from gridverify.bab.bound import Bounded, bound_domains, init_alpha
from gridverify.bab.config import Branching, SearchConfig
from gridverify.bab.domains import Domains, Folded, Problem, fold_fixed_inputs, select, select_then
from gridverify.bab.filtering import filtered_choice
from gridverify.bab.lp_cut import LpCut
from gridverify.bab.relations import NONE as NO_RELATIONS
from gridverify.bab.relations import Relations, find_relations
from gridverify.bab.split import points, split_inputs, split_neurons
from gridverify.bab.verdict import SpecResult, decide, proves, refutes
from gridverify.bounds.alpha import alpha_crown
from gridverify.bounds.core import Interval
from gridverify.bounds.crown import needed_neurons, node_relaxer, propagate
from gridverify.deadline import Deadline
from gridverify.ops import get_op


@dataclass
class _State:
    """Per-specification bookkeeping of one search."""

    worst: Tensor
    witness: Tensor
    dropped: Tensor  # largest bound among dropped domains
    explored: Tensor
    done_at: Tensor
    history: list[list[tuple[float, float]]]


def _root_domains(
    problem: Problem, spec: Tensor, config: SearchConfig, base: tuple[Interval | None, ...] | None = None
) -> tuple[Domains, branching.RootLinear]:
    graph = problem.graph
    box = (problem.lower, problem.upper)
    root = alpha_crown(graph, box, problem.output, spec, config=config.root, base=base)
    m = spec.shape[0]
    iv = tuple(
        None if t is None else (t[0].expand(m, *t[0].shape[1:]), t[1].expand(m, *t[1].shape[1:]))
        for t in root.intervals
    )
    zeros = {z: torch.zeros_like(iv[z][0]) for z in problem.split_nodes}  # type: ignore[index]
    flags = {z: torch.zeros_like(iv[z][0], dtype=torch.bool) for z in problem.split_nodes}  # type: ignore[index]
    alpha = init_alpha(problem, root.intervals)
    d = Domains(
        lower=problem.lower.expand(m, *problem.lower.shape[1:]),
        upper=problem.upper.expand(m, *problem.upper.shape[1:]),
        spec=spec,
        spec_id=torch.arange(m, device=spec.device),
        intervals=iv,
        alpha={k: v.expand(v.shape[0], m, *v.shape[2:]) for k, v in alpha.items()},
        beta_lo=zeros,
        beta_hi=dict(zeros),
        split_lo=flags,
        split_hi=dict(flags),
        bound=root.upper[0].clone(),
        depth=torch.zeros(m, dtype=torch.long, device=spec.device),
    )
    # BBPS shortcuts need the root's linear bounds of every node (one more CROWN pass); others do not.
    wanted = config.branching in (Branching.BBPS, Branching.FILTERED)
    return d, _root_linear(problem, root.intervals, spec) if wanted else {}


def _root_linear(
    problem: Problem, intervals: tuple[Interval | None, ...], spec: Tensor
) -> branching.RootLinear:
    """Linear bounds over the box of the neurons the rows of ``spec`` depend on (`needed_neurons`), for
    BBPS; every other neuron gets its interval as constant bounds (zero coefficients: sound, and BBPS never
    weighs it, its coefficient in the rows being zero). Bounding every neuron of every node instead took 6.5
    of a 15 s search's time on one thermal row of case118 (a graph bounding all 186 branches)."""
    graph, box = problem.graph, {problem.input_name: (problem.lower, problem.upper)}
    out_shape = graph.nodes[problem.output].shape
    masks = needed_neurons(graph, problem.plan, problem.output, spec.reshape(1, spec.shape[0], *out_shape))
    _, linear = propagate(
        graph, box, problem.plan, node_relaxer(graph), base=intervals, keep_linear=True, masks=masks
    )
    out = {}
    in_id = graph.input_ids[problem.input_name]
    n_in = problem.lower[0].numel()
    for i, (found, bias) in linear.items():
        lo, hi = intervals[i]  # type: ignore[misc]
        n, shape = graph.nodes[i].size, graph.nodes[i].shape
        rows = masks[i].nonzero().squeeze(1) if i in masks else torch.arange(n, device=lo.device)
        k = bias.shape[1] // 2
        a = found.get(in_id, torch.zeros(1, 2 * k, n_in, dtype=bias.dtype, device=bias.device))
        w = a.reshape(a.shape[0], 2 * k, -1)
        w_lo, w_hi = w.new_zeros(w.shape[0], n, n_in), w.new_zeros(w.shape[0], n, n_in)
        b_lo = lo[:1].reshape(1, n).expand(w.shape[0], n).clone()
        b_hi = hi[:1].reshape(1, n).expand(w.shape[0], n).clone()
        w_lo[:, rows], b_lo[:, rows] = w[:, :k], bias[:, :k]
        w_hi[:, rows], b_hi[:, rows] = -w[:, k:], -bias[:, k:]
        out[i] = (
            w_lo.reshape(w.shape[0], *shape, n_in),
            b_lo.reshape(w.shape[0], *shape),
            w_hi.reshape(w.shape[0], *shape, n_in),
            b_hi.reshape(w.shape[0], *shape),
        )
    return out


def _bytes_per_domain(d: Domains) -> int:
    """Memory of one domain's tensors (intervals, parameters, splits, coefficients)."""
    tensors = [t for iv in d.intervals if iv is not None for t in iv]
    for group in (d.alpha, d.beta_lo, d.beta_hi, d.split_lo, d.split_hi, d.coeffs):
        tensors += list(group.values())
    total = sum(t.element_size() * t.numel() for t in tensors)
    return 2 * total // max(d.size, 1)  # twice: children are built next to their parents


def _branch(
    problem: Problem,
    b: Bounded,
    root_linear: branching.RootLinear,
    config: SearchConfig,
    by_input: bool,
    relations: Relations,
) -> Domains:
    d = b.domains
    if by_input:
        dim, mid = branching.choose_input(b, problem.upper - problem.lower)
        return split_inputs(d, dim, mid)
    if config.branching is Branching.WIDTH:
        scores = branching.width_scores(problem, b)
    else:
        scores = branching.bbps_scores(problem, b, root_linear, config.split_tables)
        scores = branching.with_width_fallback(problem, b, scores, config.bbps_floor_frac * config.tolerance)
    if config.branching is Branching.FILTERED:
        choice = filtered_choice(
            problem,
            b,
            scores,
            config.split_tables,
            config.bound,
            config.filtering,
            relations,
        )
        return split_neurons(d, choice)
    node, index = branching.choose_neuron(problem, scores)
    point = points(problem, d, node, index, config.split_tables)
    return split_neurons(d, branching.Choice(node, index, point))


def _attack(
    problem: Problem,
    d: Domains,
    state: _State,
    config: AttackConfig,
    starts: Tensor | None = None,
    deadline: Deadline | None = None,
) -> Tensor:
    """Search the domains' boxes for their specification's worst point; returns each specification's
    gain in its worst value (0 where nothing better was found)."""
    name = next(n for n, i in problem.graph.outputs if i == problem.output)
    before = state.worst.clone()
    x, v = attack(problem.graph, name, d.spec, d.lower, d.upper, config, starts=starts, deadline=deadline)
    for k in range(d.size):
        s = int(d.spec_id[k])
        if float(v[k]) > float(state.worst[s]):
            state.worst[s], state.witness[s] = v[k], x[k].to(torch.float64)
    return (state.worst - before).nan_to_num(nan=0.0, posinf=torch.inf, neginf=0.0)


@dataclass
class _Falsifier:
    """The time split between proving and falsifying inside one search: a round of attacks runs whenever
    the attacks' share of the elapsed time is below ``share``, which grows (x1.5) after a round that
    improved some specification's worst value by more than the tolerance and shrinks otherwise."""

    low: float
    share: float
    high: float
    spent: float = 0.0
    rounds: int = 0

    def due(self, elapsed: float) -> bool:
        return self.spent < self.share * elapsed

    def record(self, seconds: float, improved: bool) -> None:
        self.spent += seconds
        self.rounds += 1
        self.share = min(self.high, self.share * 1.5) if improved else max(self.low, self.share / 1.5)


def _attack_round(
    problem: Problem, d: Domains, state: _State, config: SearchConfig, falsifier: _Falsifier, until: Deadline
) -> None:
    """One falsifying round on the specifications still undecided: in each, the open domain with the
    largest bound, started from the specification's best point so far and from the corner of the domain
    that maximises its last linear upper bound."""
    undecided = state.done_at < 0
    if d.size == 0 or not bool(undecided.any()):
        return
    began = time.monotonic()
    m = state.worst.shape[0]
    highest = torch.full((m,), -torch.inf, dtype=d.bound.dtype).scatter_reduce(0, d.spec_id, d.bound, "amax")
    at_top = (d.bound == highest[d.spec_id]).nonzero().squeeze(1)  # each spec's domains of its largest bound
    top = torch.full((m,), -1, dtype=torch.long).scatter_reduce(0, d.spec_id[at_top], at_top, "amax")
    pick = top[(top >= 0) & undecided]
    if pick.numel() == 0:
        return
    chosen = select(d, pick)
    starts = [state.witness[chosen.spec_id].to(chosen.lower.dtype).unsqueeze(1)]
    if chosen.input_coeff is not None:
        # input_coeff belongs to the lower bound of -c^T y: the upper line of c^T y has its negation
        corner = torch.where(chosen.input_coeff < 0, chosen.upper, chosen.lower)
        starts.append(corner.unsqueeze(1))
    cfg = replace(config.attack, restarts=8, steps=30, seed=config.attack.seed + falsifier.rounds + 1)
    gain = _attack(problem, chosen, state, cfg, torch.cat(starts, 1), until)
    falsifier.record(time.monotonic() - began, bool((gain > config.tolerance).any()))


def _attack_children(
    problem: Problem,
    d: Domains,
    state: _State,
    config: SearchConfig,
    it: int,
    deadline: Deadline,
    batch_s: float,
) -> None:
    """Input splits: attack the few bounded children with the largest bounds (the boxes most likely to
    hold a counterexample), for at most a quarter of the batch's time: every child of a batch attacked
    with all its box's corners cost more than bounding them (cGAN: 39 of 65 s)."""
    if d.size == 0:
        return
    top = torch.topk(d.bound.nan_to_num(nan=torch.inf), min(d.size, ATTACKED_CHILDREN)).indices
    cfg = replace(config.attack, restarts=4, steps=10, seed=it)
    until = deadline.until(time.monotonic() + max(0.25 * batch_s, 0.05))
    _attack(problem, select(d, top), state, cfg, None, until)


ATTACKED_CHILDREN = 4
"""Input splits: children attacked per attacking batch (`_attack_children`)."""


def _shaped(starts: Tensor | None, problem: Problem) -> Tensor | None:
    if starts is None:
        return None
    return starts.reshape(starts.shape[0], -1, *problem.lower.shape[1:]).to(problem.lower)


def _drop(d: Domains, keep: Tensor, state: _State) -> Domains:
    """Drop domains with ``keep`` False, remembering their bounds per specification."""
    gone = ~keep
    if not bool(gone.any()):
        return d  # nothing dropped: no copy of every open domain's tensors (called every batch)
    state.dropped.scatter_reduce_(0, d.spec_id[gone], d.bound[gone], reduce="amax")
    return select(d, keep.nonzero().squeeze(1))


def _upper(d: Domains, state: _State) -> Tensor:
    best = state.dropped.clone()
    best.scatter_reduce_(0, d.spec_id, d.bound, reduce="amax")
    return best


@dataclass
class Search:
    """A branch-and-bound search that stops at a deadline and can go on later from where it stopped: its
    open domains, best points, LP share and heuristics' clocks are kept, so a second `go` costs no second
    root (alpha-CROWN, attack, relations). `verify` gives every open row a few seconds first and the rows
    still open the rest of the time later; restarted, case57's near-threshold balance rows each spent both
    turns rebuilding what the first had (p_balance[bus 34] settles alone in 3.9 s, and stayed open after
    2 + 2.7 s in two turns).

    It splits inputs when the box has at most ``input_split_max_dims`` free dimensions, neurons otherwise,
    and switches between the two when the largest gap stalls (`_Mode`). Domains are taken largest gap
    first; near the domain cap of ``memory_gb``, smallest gap first (the children most likely to settle)
    in batches that keep the count under the cap, so the search stops for memory only when the cap is full.
    The root attack gets ``attack_share[1]`` of the budget. Fixed input dimensions are folded into the
    graph first (`fold_fixed_inputs`); witnesses come back in the original input's shape."""

    problem: Problem
    folded: Folded | None
    thr: Tensor | None
    config: SearchConfig
    closed: bool
    state: _State
    open_: Domains
    root_linear: branching.RootLinear
    relations: Relations
    lp: LpCut | None
    cap: int
    mode: _Mode
    falsifier: _Falsifier
    active_s: float = 0.0  # seconds spent in earlier `go` calls: the falsifier's and `_Mode`'s clock
    it: int = 0
    per_s: float = 0.0  # the last batch's duration per domain: no batch starts that would end past the budget

    @staticmethod
    def start(
        problem: Problem,
        spec: Tensor,
        thr: Tensor | None,
        config: SearchConfig,
        base: tuple[Interval | None, ...] | None,
        deadline: Deadline,
        closed: bool = False,
        starts: Tensor | None = None,
    ) -> Search:
        """The root of a search over the rows of ``spec``: alpha-CROWN, attack, relations, first bounds."""
        folded = fold_fixed_inputs(problem)
        if folded is not None:
            problem, base = folded.problem, _narrow_base(base, problem, folded)
            starts = None if starts is None else folded.narrow(starts)
        dtype = problem.lower.dtype
        m = spec.shape[0]
        state = _State(
            torch.full((m,), -torch.inf, dtype=torch.float64),
            problem.lower.to(torch.float64).expand(m, *problem.lower.shape[1:]).clone(),
            torch.full((m,), -torch.inf, dtype=dtype),
            torch.zeros(m, dtype=torch.long),
            torch.full((m,), -1.0),
            [[] for _ in range(m)],
        )
        d, root_linear = _root_domains(problem, spec, config, base)
        root_attack = deadline.until(time.monotonic() + config.attack_share[1] * deadline.remaining_s())
        _attack(problem, d, state, config.attack, _shaped(starts, problem), root_attack)
        relations = find_relations(problem, d.intervals) if config.relations else NO_RELATIONS
        lp = (
            LpCut.of(problem, config.lp_cut, config.lp_patterns, config.lp_threads, config.lp_affine)
            if config.lp_cut > 0
            else None
        )
        nodes = None if lp is None else lp.nodes
        b = bound_domains(problem, d, replace(config.bound, steps=config.root.steps), relations, nodes)
        lp_until = deadline.until(time.monotonic() + 0.05 * deadline.timeout_s)
        b = _lp_finish(lp, b, state, thr, config, closed, lp_until)
        free = int((problem.upper - problem.lower).gt(0).sum())
        lean = _lean_search(problem, config, free)
        if lean:
            b = replace(b, domains=_lean(b.domains))
        per_domain = max(_bytes_per_domain(b.domains), 1)
        cap = min(config.max_domains, int(config.memory_gb / 2 * 2**30 / per_domain))
        # bounding keeps about four copies of a domain's tensors alive (autograd): size filtering to fit
        max_children = min(
            config.filtering.max_children, int(config.memory_gb / 2 * 2**30 / (2 * per_domain))
        )
        config = replace(config, filtering=replace(config.filtering, max_children=max(max_children, 2)))
        mode = _Mode(
            free <= config.input_split_max_dims,
            free <= config.input_split_switch_dims,
            0.0,  # the windows are set by each `go` from the search's time (`_Mode.scale`)
            config.stall_gain,
            free=free,
            locked=lean,
        )
        falsifier = _Falsifier(*config.attack_share)
        return Search(
            problem,
            folded,
            thr,
            config,
            closed,
            state,
            b.domains,
            root_linear,
            relations,
            lp,
            cap,
            mode,
            falsifier,
        )

    @property
    def open_bytes(self) -> int:
        """Memory held by the open domains."""
        return _bytes_per_domain(self.open_) * self.open_.size // 2

    def go(self, deadline: Deadline) -> list[SpecResult]:
        """Search until ``deadline`` (or until every row is settled, or the domain cap is full); results
        of every row, their times since ``deadline.start``, their domains and bound history those of this
        call only (a caller that keeps both calls' results adds them up)."""
        problem, config, state = self.problem, self.config, self.state
        thr, closed, mode, falsifier = self.thr, self.closed, self.mode, self.falsifier
        state.history = [[] for _ in state.history]
        explored_before = state.explored.clone()
        state.done_at[state.done_at >= 0] = 0.0  # settled before this call: at its start
        active_before = self.active_s
        mode.scale(config.stall_window * (active_before + deadline.timeout_s))
        open_ = self.open_
        bar = tqdm(total=None, disable=not config.progress, desc="branch and bound", unit="batch")
        stopped = "settled"
        try:
            while True:
                began = time.monotonic()
                active = active_before + deadline.elapsed_s()
                open_ = _prune(open_, state, thr, config, deadline, closed)
                upper = _upper(open_, state)
                _record(state, upper, deadline)
                bar.set_postfix(
                    open=open_.size,
                    undecided=int((state.done_at < 0).sum()),
                    upper=f"{float(upper.max()):.4g}",
                )
                next_s = self.per_s * min(config.batch, open_.size)
                stopped = _stop_reason(open_.size, time.monotonic() + next_s, deadline, self.cap)
                if stopped:
                    break
                if falsifier.due(active):
                    # a round takes at most its share of the time so far (attacks on large graphs are slow)
                    until = deadline.until(time.monotonic() + max(0.5, falsifier.share * active))
                    _attack_round(problem, open_, state, config, falsifier, until)
                    open_ = _prune(open_, state, thr, config, deadline, closed)
                    if open_.size == 0:
                        break
                open_ = self._batch(open_, deadline, began, active)
                bar.update(1)
        finally:
            bar.close()
            self.open_ = open_
            self.active_s = active_before + deadline.elapsed_s()
        if stopped != "settled" and mode.switches:
            stopped = f"{stopped} (after {'; '.join(mode.switches)})"
        m = state.worst.shape[0]
        witness = state.witness if self.folded is None else self.folded.widen(state.witness.reshape(m, -1))
        explored = state.explored - explored_before
        return _results(state, witness, explored, _upper(open_, state), thr, deadline, closed, stopped)

    def _batch(self, open_: Domains, deadline: Deadline, began: float, active: float) -> Domains:
        """One batch: the domains to split (`_in_turns`), their children bounded and finished by LP; the
        open domains after it."""
        problem, config, state, lp, mode = self.problem, self.config, self.state, self.lp, self.mode
        thr, closed, nodes = self.thr, self.closed, None if self.lp is None else self.lp.nodes
        gap = (open_.bound - _cut(state, thr, config, open_.bound.dtype)[open_.spec_id]).clamp(min=0)
        mode.observe(float(gap.max()), active)
        # every open specification's largest gap to what would settle it first, then each one's second,
        # ... (`_in_turns`); near the cap smallest first, in a batch that keeps the count under it (a split
        # adds one domain)
        crowded = open_.size + config.batch > self.cap
        if crowded or not config.in_turns:
            order = torch.argsort(gap, descending=not crowded)
        else:
            order = _in_turns(gap, open_.spec_id)
        take = max(1, min(config.batch, self.cap - open_.size)) if crowded else config.batch
        pick, rest = order[:take], order[take:]
        chosen = select(open_, pick)
        parents = Bounded(chosen, chosen.coeffs, chosen.input_coeff)  # type: ignore[arg-type]
        children = _branch(problem, parents, self.root_linear, config, mode.by_input, self.relations)
        state.explored.scatter_add_(0, children.spec_id, torch.ones_like(children.spec_id))
        if mode.by_input:  # children their parent's line already settles are not bounded (`split_inputs`)
            cut = _cut(state, thr, config, children.bound.dtype)[children.spec_id]
            children = _drop(children, refutes(children.bound, cut, closed and thr is not None), state)
        if children.size:
            refresh = mode.by_input if config.refresh_intermediate is None else config.refresh_intermediate
            how = replace(config.bound, refresh_intermediate=refresh)
            if mode.by_input and _relaxed_neurons(problem) <= SMALL_GRAPH_NEURONS:
                how = replace(how, steps=max(how.steps, SMALL_GRAPH_STEPS))
            bounded = bound_domains(problem, children, how, self.relations, nodes)
            share = lp.share if lp is not None else 0.0
            until = deadline.until(time.monotonic() + share * (time.monotonic() - began))
            children = _lp_finish(lp, bounded, state, thr, config, closed, until).domains
            if mode.by_input and self.it % config.attack_every == 0:
                spent = time.monotonic() - began
                _attack_children(problem, children, state, config, self.it, deadline, spent)
            if mode.locked:
                children = _lean(children)
        self.it += 1
        self.per_s = (time.monotonic() - began) / pick.numel()
        return select_then(open_, rest, children)


def _lp_finish(
    lp: LpCut | None,
    b: Bounded,
    state: _State,
    thr: Tensor | None,
    config: SearchConfig,
    closed: bool,
    until: Deadline,
) -> Bounded:
    """``b`` with the bounds of its open domains (those the bound does not settle), largest first, finished
    by the linear program over the piecewise-linear part (`gridverify.bab.lp_cut`) until ``until``; the
    programs' share of the time follows what they gain (`LpCut.adapt`)."""
    d = b.domains
    if lp is None or b.frontier is None:
        return b
    cut = _cut(state, thr, config, d.bound.dtype)[d.spec_id]
    open_ = torch.nonzero(d.bound > cut).flatten()
    which = open_[torch.argsort(d.bound[open_], descending=True)]
    lower = lp.lower(b.frontier, d, which, until).to(d.bound)
    solved = torch.isfinite(lower)
    before = d.bound[which]
    after = torch.minimum(before, -lower)
    lp.adapt(int(solved.sum()), int(((before - after) >= 0.1 * (before - cut[which])).sum()), config.lp_cut)
    bound = d.bound.clone()
    bound[which] = after
    return replace(b, domains=replace(d, bound=bound))


def _narrow_base(
    base: tuple[Interval | None, ...] | None, problem: Problem, folded: Folded
) -> tuple[Interval | None, ...] | None:
    """``base`` with the input node's interval (if any) cut to the folded input's dimensions."""
    in_id = problem.graph.input_ids[problem.input_name]
    if base is None or base[in_id] is None:
        return base
    lo, hi = base[in_id]  # type: ignore[misc]
    out = list(base)
    out[in_id] = (folded.narrow(lo), folded.narrow(hi))
    return tuple(out)


SMALL_GRAPH_NEURONS = 4096
SMALL_GRAPH_STEPS = 8
"""Input splits on a graph of at most ``SMALL_GRAPH_NEURONS`` relaxed neurons: each child's alphas get at
least ``SMALL_GRAPH_STEPS`` steps, and its children take them as their intermediate lines
(`gridverify.bab.bound`). On such graphs a step is cheap and the optimised alphas are inherited down the
tree: dist_shift_2023 (1048 relu and sigmoid neurons) index9192 unsat in 11 s from process start, 8946
in 4 s, 6747 in 20 s (the first two timeouts at 300 s with 1 step, 6747 63 s). On large graphs (cGAN 32:
53632 neurons) steps cost more than they gain (prop 3 after 120 s: largest bound 1.56 with 8 steps,
0.45 with 1)."""


def _lean_search(problem: Problem, config: SearchConfig, free: int) -> bool:
    """Whether the search splits inputs on lean domains (`_lean`): input splits from the start, on a graph
    above `SMALL_GRAPH_NEURONS` with one bound step and refreshed intervals, where a child's bound reads
    nothing of its parent but its box (its intervals come from forward mode on its own box, its alphas are
    CROWN's default on them: `gridverify.bab.bound`). Such a search never switches to neuron splits (which
    would need the intervals and parameters): on cGAN's 53632 relus they gained nothing (`_Mode`)."""
    return (
        free <= config.input_split_max_dims
        and config.bound.steps <= 1
        and config.refresh_intermediate is not False
        and _relaxed_neurons(problem) > SMALL_GRAPH_NEURONS
    )


def _lean(d: Domains) -> Domains:
    """``d`` without per-neuron state (intervals, alphas, betas, split flags, coefficients): a lean domain
    is its box, bound and last input line only. cGAN 32 nCh 3: 3.7 MB a domain with it, so that the search
    stopped at its memory cap with a few hundred open domains; the parents' intervals as the children's
    base changed their bounds by 1e-5 (0.46756 -> 0.46757, the largest of 64)."""
    if d.neuron_split:
        raise ValueError("a domain with neuron splits cannot be made lean")
    return replace(
        d,
        intervals=(None,) * len(d.intervals),
        alpha={},
        beta_lo={},
        beta_hi={},
        split_lo={},
        split_hi={},
        coeffs={},
    )


def _relaxed_neurons(problem: Problem) -> int:
    """Neurons of the nonlinear ops the output depends on."""
    graph = problem.graph
    needed = problem.plan.ancestors[problem.output]
    return sum(graph.nodes[i].size for i in needed if get_op(graph.nodes[i].op).kind == "nonlinear")


def _in_turns(gap: Tensor, spec_id: Tensor) -> Tensor:
    """Domain order for the next batch: each specification's largest-gap domain (specifications by that
    gap), then each one's second largest, and so on. Largest gap first over all domains would give the
    whole batch to the specification with the loosest bound while rows a few splits from their threshold
    wait (case30: 2 of 2204 domains for a row 5e-4 above its threshold)."""
    order = torch.argsort(gap, descending=True, stable=True)
    spec = spec_id[order]
    grouped = torch.argsort(spec, stable=True)  # by specification, largest gap first within each
    counts = torch.bincount(spec[grouped])
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(grouped)
    rank[grouped] = torch.arange(grouped.numel(), device=gap.device) - first[spec[grouped]]
    return order[torch.argsort(rank, stable=True)]


@dataclass
class _Mode:
    """Input or neuron splitting, switched when the largest open gap (certified bound less what would
    settle it) has shrunk by less than ``gain`` (relative) over a window of ``window_s`` seconds: neuron
    splits stall where the relaxations are tight on the domain's box and only a smaller box helps; input
    splits stall in many dimensions. Input splitting is entered only when ``allowed`` (at most
    ``input_split_switch_dims`` free input dimensions). Input splits get ``input_window_s`` (default
    ``window_s``; the search passes ``window_s`` times the free dimensions): the largest gap shrinks only
    once every piece of its box has been split, about 2^n children for n dimensions, so a short window
    reads that as a stall (cGAN, 4 dimensions: neuron splits after 30 of 60 s, useless on 60k relus)."""

    by_input: bool
    allowed: bool
    window_s: float
    gain: float
    input_window_s: float | None = None
    since: float = 0.0
    gap_then: float | None = None
    switches: list[str] = field(default_factory=list)
    free: int = 1  # free input dimensions (`scale`)
    locked: bool = False  # input splits on lean domains (`_lean_search`): never switched

    def scale(self, window_s: float) -> None:
        """Windows for a search given ``window_s / stall_window`` seconds in all (this turn and those before,
        `Search.go`): ``window_s`` for neuron splits, times the free dimensions for input splits. Kept
        from a search's first turn, a resumed search's windows were a tenth of that turn's."""
        self.window_s, self.input_window_s = window_s, window_s * max(self.free, 1)

    def observe(self, gap: float, now: float) -> None:
        if self.gap_then is None:
            self.gap_then, self.since = gap, now
            return
        window = self.input_window_s if self.by_input and self.input_window_s is not None else self.window_s
        if now - self.since < window:
            return
        if gap > (1.0 - self.gain) * self.gap_then and (self.allowed or self.by_input) and not self.locked:
            self.by_input = not self.by_input
            self.switches.append(f"{'input' if self.by_input else 'neuron'} splits from {now:.1f} s")
        self.gap_then, self.since = gap, now


def _stop_reason(open_domains: int, next_end: float, deadline: Deadline, cap: int) -> str:
    """Why the search loop ends now ("" to go on): nothing open, no time for another batch (it would end
    at ``next_end``, a ``time.monotonic()`` instant, past the deadline), or the domain cap of ``memory_gb``
    is full (no room for one more child)."""
    if open_domains == 0:
        return "settled"
    if next_end > deadline.end:
        return "time"
    return "memory" if open_domains >= cap else ""


def _prune(
    d: Domains, state: _State, thr: Tensor | None, config: SearchConfig, deadline: Deadline, closed: bool
) -> Domains:
    """Drop domains that cannot change an answer: bound <= threshold (decide; < for a closed unsafe set)
    or <= worst + tolerance (maximise), and every domain of a specification already violated."""
    worst = state.worst.to(d.bound.dtype)
    cut = _cut(state, thr, config, d.bound.dtype)
    strict = closed and thr is not None
    violated = torch.zeros_like(worst, dtype=torch.bool) if thr is None else refutes(worst, thr, closed)
    # a domain stays while its bound is on the unsafe side of the cut (NaN bounds go; `proves` keeps them)
    keep = refutes(d.bound, cut[d.spec_id], strict)
    d = _drop(d, keep & ~violated[d.spec_id], state)
    upper = _upper(d, state)
    settled = proves(upper, cut, strict) | violated
    newly = settled & (state.done_at < 0)
    state.done_at[newly] = deadline.elapsed_s()
    return d


def _cut(state: _State, thr: Tensor | None, config: SearchConfig, dtype: torch.dtype) -> Tensor:
    """(m,) the bound below which a specification's domain is settled: the threshold, or the best value
    found plus the tolerance."""
    return state.worst.to(dtype) + config.tolerance if thr is None else thr


def _record(state: _State, upper: Tensor, deadline: Deadline) -> None:
    """Append ``(s since the deadline's start, upper)`` for every specification whose certified bound
    improved."""
    now = deadline.elapsed_s()
    for s in range(upper.shape[0]):
        u, past = float(upper[s]), state.history[s]
        if not past or u < past[-1][1]:
            past.append((now, u))


def _results(
    state: _State,
    witness: Tensor,
    explored: Tensor,
    upper: Tensor,
    thr: Tensor | None,
    deadline: Deadline,
    closed: bool,
    stopped: str,
) -> list[SpecResult]:
    out = []
    for s in range(upper.shape[0]):
        u, w = float(upper[s]), float(state.worst[s])
        verdict = None if thr is None else decide(u, w, float(thr[s]), closed)
        seconds = float(state.done_at[s]) if state.done_at[s] >= 0 else deadline.elapsed_s()
        out.append(
            SpecResult(
                s,
                verdict,
                max(u, w),
                w,
                witness[s],
                int(explored[s]),
                seconds,
                tuple(state.history[s]),
                "settled" if state.done_at[s] >= 0 else stopped,
            )
        )
    return out

"""`verify`: every constraint of a case under its surrogate, over a load region, answered with certainty.

One graph from the load box to every constraint value (`gridverify.surrogate.compose`); the selected
families are concatenated into one output ``violation`` and each constraint becomes specification rows:
``+e_r`` for an inequality ``g <= 0`` (violation ``g``), ``+e_r`` and ``-e_r`` for an equality ``h = 0``
(violation ``|h|``). Three stages share the time budget:

0. *screen* (every row): one CROWN pass proves what it can (the limits a sigmoid squash keeps, most
   thermal and angle limits) and uniform loads plus the box centre, evaluated in float64, find the rows
   some load already violates;
1. *decide* (the rows still open, threshold = tolerance, `gridverify.bab.maximise`, `BRANCHING`): a row
   stops as soon as its bound drops below the tolerance or a load (checked in float64) exceeds it; in
   rounds (`_decide_in_rounds`: every row at most ``row_alone_s`` first, then the rows left share the rest,
   each search going on from where its last turn stopped);
   ``1 - narrow_share`` of the budget;
2. *narrow* (violated rows, worst first, no threshold): their certified intervals
   ``[worst found, bound]`` are narrowed with what is left.

Before the screen, `tightened_base` bounds the surrogate's boundary neurons (pre-sigmoid outputs, and the
relu layers above them) over the whole region by LP, within ``tighten_share`` of the budget and cached per
surrogate, region and settings (`gridverify.bab.lp_tighten`); the screen's CROWN pass and every chunk's
search start from those intervals (``base``).

Branch and bound runs on up to ``VerifyConfig.chunk`` rows of one family at a time (on the family's node of
the graph; one row at a time while each can have ``row_alone_s`` to itself, `chunk_size`), each chunk with an
equal share of its stage's time left; rows that no time is left for keep the
screen's answer (on large cases with tight budgets many rows end there, with CROWN's bound as their
certified bound).

Memory stays inside ``VerifyConfig.memory_gb`` (`Budget`): rows are (output index, sign) pairs (`Rows`),
never one dense R x n_out matrix; the screen bounds blocks of rows and evaluates its loads in chunks of
points; the falsifiers' points per pass and the search's ``memory_gb`` are fitted to the budget, and a
root alpha-CROWN too large for it shares its intermediate alphas (`gridverify.bounds.alpha.fitting`). A
block, falsifier pass or search that still runs out of memory (`out_of_memory`) leaves its rows the
answer they had.

Every witness is re-evaluated in float64 on the CPU and checked to lie in the region before a ``violated``
verdict is written; violated constraints are then replayed in pandapower (`gridverify.verify.replay`).
"""

from __future__ import annotations

import datetime
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gridverify.bab import (
    AttackConfig,
    BoundConfig,
    Branching,
    Prepared,
    Search,
    SearchConfig,
    SpecResult,
    Verdict,
    attack,
    begin,
    combine,
    decide,
    line_corners,
)
from gridverify.bab.lp_tighten import DEFAULT_CACHE as TIGHTEN_CACHE
from gridverify.bab.lp_tighten import Base, lp_base
from gridverify.bounds.alpha import AlphaConfig, fitting
from gridverify.bounds.core import make_plan
from gridverify.bounds.crown import ROWS, final_bounds, needed_neurons, node_relaxer, propagate, resolve
from gridverify.deadline import Deadline
from gridverify.grid import Constraint, Kind
from gridverify.grid.families import BALANCE, NAMES, family
from gridverify.ir import Graph
from gridverify.ir.builder import lower_fused, rebuild
from gridverify.specs import Region
from gridverify.specs.certificate import Certificate, ConstraintRecord
from gridverify.surrogate.case import Case, load_case
from gridverify.verify.replay import replay_records

OUTPUT = "violation"
DEFAULT_TOLERANCES = dict.fromkeys(BALANCE, 0.01)
"""Families whose default tolerance is not ``VerifyConfig.tolerance``: a surrogate never balances power
exactly, so its balance residuals are judged at 0.01 pu (1 MW / 1 MVAr on a 100 MVA base)."""


class RegionWarning(UserWarning):
    """The region leaves the surrogate's training region: answers there describe extrapolation."""


BRANCHING = Branching.WIDTH
"""`verify` splits the neuron of largest width x |coefficient|, not BBPS's choice: with each domain's bound
finished by LP over the surrogate's ReLU part (`gridverify.bab.lp_cut`), splits of the surrogate's outputs
(pre-sigmoid voltages and angles) pay off through the program, which BBPS's estimate (and filtering's
CROWN-only child bounds) cannot see; BBPS splits sines and products instead. Alone, 10 s, 1 thread:
case14 p_balance[bus 13] 0.0141 (BBPS) / 0.0041 (width), p_balance[bus 4] 0.0105 / 0.0073 (worst found
0.0029, 0.0068). `verify case118 --constraints thermal_from thermal_to` at 240 s: 5 unknown (filtered BBPS),
4 (width), every open bound lower. Narrowing violated rows too: case118 at 600 s, largest certified
p_balance bound 1.03 pu (width) against 2.39 (filtered BBPS), balance median 1.72 against 1.93; case57 at
120 s the other way, 1.36 against 1.24."""

ROOT = AlphaConfig(steps=0)
"""A decide search's root: CROWN on the screen's intervals (and the LP-tightened base), one bounding step, no
alpha-CROWN. On case57 the root alpha-CROWN (20 steps, intermediate bounds optimised per row) narrowed the
intervals of the 29 rows the screen leaves open by 1e-5 of their total width (alpha-CROWN on all 29 at once:
20810.07 -> 20809.93 in 7.3 s) and took 0.8 s of each row's search, most of a first turn of 3 s. Alone, 1
thread, both rows of the constraint: p_balance[bus 34] settles in 9.0 s without it (19.4 s with),
q_balance[bus 42] 6.6 (10.7), q_balance[bus 54] 11.7 (13.5), p_balance[bus 56] 9.8 (13.5)."""

BOUND = BoundConfig(steps=4)
"""alpha-beta steps per batch of domains in a decide search (10 before; children start from their parent's
alphas). Alone, 1 thread, with `ROOT`: p_balance[bus 34] 10.5 s (9.0 with 10 steps), q_balance[bus 42] 3.9
(6.6), q_balance[bus 54] 8.4 (11.7), p_balance[bus 56] 8.4 (9.8). Both against the old settings in one process
(`python bench/rows.py case57 "p_balance[bus 34]" "q_balance[bus 42]" "q_balance[bus 54]" --compare
root-alpha`): the six rows settle in 19.6 s against 34.9 s."""

NARROW_ROOT, NARROW_BOUND = SearchConfig().root, SearchConfig().bound
"""The narrowing searches keep a root alpha-CROWN (20 steps) and 10 alpha-beta steps per batch: they lower
the bounds of violated rows far above their thresholds, where the root's bound is most of the answer
(case118 at 600 s, both with every row decided and a helper's job beside it: balance median 2.74 with
`ROOT` and `BOUND` in narrowing too, 2.42 with these)."""


@dataclass(frozen=True)
class VerifyConfig:
    """Budget and settings of one verification run: ``timeout_s`` is wall time for the whole `verify` call
    (loading, tightening, search and replay; violations the replay does not reach in time keep no replay)."""

    tolerance: float = 1e-4  # in each family's unit (`Family.unit`), for families not in `tolerances`
    tolerances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    timeout_s: float = 120.0
    narrow_share: float = 0.1  # of the budget kept for narrowing violated rows (and all the others leave)
    device: str = "cpu"
    dtype: torch.dtype = torch.float64  # the only dtype whose bounds are sound (float32 is refused)
    # neuron splits refresh the children's intermediate intervals (CROWN over the nodes the rows need):
    # alone, 1 thread, case118 thermal_from[branch 3] settles in 5.0 s (11.7 s without), [branch 155] in
    # 43 s (50); case57 q_balance[bus 41] reaches 0.0101 in 40 s (0.0108, flat from 7 s, without: its
    # children's sines and products kept the root's intervals); rows that settle in 3-4 s take 10-15% longer
    # no switch to input splits when neuron splits stall (`gridverify.bab.search._Mode`): a load box has
    # tens of free dimensions (case14 22, case30 40), and a search that switched kept splitting loads for
    # the rest of its turns (case14 at 120 s: q_balance[bus 2], which settles alone in 5 s, open after 30 s in
    # three turns; 1 unknown row against 0 without the switch, all decided at 85 s; case30 3 -> 1)
    # no alpha-CROWN at a search's root (`ROOT`) and 4 alpha-beta steps per batch (`BOUND`): see below
    search: SearchConfig = SearchConfig(
        branching=BRANCHING, refresh_intermediate=True, input_split_switch_dims=0, root=ROOT, bound=BOUND
    )
    # narrowing searches (no threshold) finish a domain with one LP program at most 1x its bounding time,
    # not `search`'s sign patterns at 4x: case118 at 600 s, balance median 1.77 this way, 2.18 with the
    # patterns (bench/verify.py --compare narrow-patterns; they decide near-threshold rows, narrowing wants
    # many domains)
    narrow_lp: tuple[float, int] = (1.0, 1)  # (SearchConfig.lp_cut, lp_patterns) of the narrowing searches
    chunk: int = 64  # specification rows per branch-and-bound run (bounds time and memory on large cases)
    row_alone_s: float = 3.0  # fewer rows per run while each can have this long alone (`chunk_size`; 0: off)
    min_chunk_s: float = 1.0  # no branch-and-bound run is started with less time than this left
    keep_share: float = 0.25  # of memory_gb for searches kept between decide rounds (`Paused`; 0: restart)
    # of a chunk's time for its root alpha-CROWN (which the search cannot interrupt), where `search.root` has
    # steps (`ROOT` has none; bench/verify.py's root-alpha baseline does); 0.3 before: at 120 s,
    # case57 6 -> 2 unknown, case30 3 -> 2 (same run), case14 0 both
    root_share: float = 0.1
    samples: int = 256  # uniform loads evaluated for every row before any search
    attack: AttackConfig = AttackConfig(rounds=3)  # the screen's falsifier, on every row CROWN leaves open
    attack_share: float = 0.15  # of the budget, at most, for the screen's falsifier
    climb_violated: bool = False  # the screen's full falsifier pass also climbs rows a load violates already
    # of the budget, at most, for that full pass (inside ``attack_share``): it violated no row the quick pass
    # had not on case14/30/57/118, and each decide search attacks its rows at its root; case57 at 120 s, 2
    # unknown rows with 0.05 of the screen for both passes (full pass 2.5 s), 6 with 0.15 (full pass 12 s)
    climb_share: float = 0.03
    pool_starts: int = 4  # per row, the best loads of the screen's pool (any row's) start its falsifier
    replay: bool = True
    replay_share: float = 0.1  # of the budget kept for pandapower's power flows at the witnesses
    # LP tightening of the surrogate's boundary neurons before the screen (`tightened_base`)
    tighten_share: float = 0.2  # of the budget, at most (0: off)
    tighten_cache: Path | None = TIGHTEN_CACHE  # tightened intervals kept between runs (None: memory only)
    # what the run's tensors may take, in GiB: sizes the screen's blocks of rows and points, the falsifier's
    # points per pass and the search (`SearchConfig.memory_gb`); the process's own start-up comes on top
    memory_gb: float = 4.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tolerances) - set(NAMES))
        if unknown:
            raise ValueError(f"tolerances for unknown families {unknown}; known: {list(NAMES)}")
        if self.dtype != torch.float64:
            raise ValueError(
                f"dtype {self.dtype}: certified bounds are computed in float64 only (float32 relaxations "
                "and constants are not rounded outward)"
            )
        bad = {f: t for f, t in {"*": self.tolerance, **self.tolerances}.items() if not t >= 0}
        if bad:
            raise ValueError(f"tolerances must be >= 0, got {bad}")
        if not (np.isfinite(self.memory_gb) and self.memory_gb > 0):
            raise ValueError(f"memory_gb must be a positive number, got {self.memory_gb}")

    def tolerance_of(self, family: str) -> float:
        return float(self.tolerances.get(family, self.tolerance))

    def settings(self) -> dict[str, object]:
        return {
            "tolerance": self.tolerance,
            "tolerances": dict(self.tolerances),
            "timeout_s": round(self.timeout_s, 1),
            "narrow_share": self.narrow_share,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "batch": self.search.batch,
            "branching": self.search.branching.value,
            "lp_share": self.search.lp_cut,  # the LP finish (`gridverify.bab.lp_cut`): 0 off
            "lp_patterns": self.search.lp_patterns,
            "lp_threads": self.search.lp_threads,
            "lp_affine": self.search.lp_affine,
            "tighten_share": self.tighten_share,
            "memory_gb": round(self.memory_gb, 2),
        }


@dataclass(frozen=True)
class Rows:
    """The specification rows of the selected constraints: row ``i`` reads ``sign[i] * y[index[i]]`` of the
    violation output ``y`` (``n_out`` entries) and belongs to constraint ``owner[i]``.

    Every row is a +-1 selection of one output, so rows are kept as (index, sign) pairs: a dense matrix is
    R x n_out (case1354: 17130 x 14421 float64, 2 GB). `block` builds the dense rows of a few rows where a
    bound or a search needs a matrix; `select` reads rows off output values by a gather."""

    index: np.ndarray  # (R,) int64
    sign: np.ndarray  # (R,) float64, +1 or -1
    owner: np.ndarray  # (R,)
    n_out: int

    def __len__(self) -> int:
        return len(self.index)

    @property
    def spec(self) -> Tensor:
        """All rows as one dense (R, n_out) float64 matrix: small cases and tests only."""
        return self.block(np.arange(len(self)))

    def block(self, which: Sequence[int] | np.ndarray | Tensor, device: str | torch.device = "cpu") -> Tensor:
        """Dense (m, n_out) float64 rows ``which``."""
        at = torch.as_tensor(np.asarray(which, dtype=np.int64))
        out = torch.zeros(len(at), self.n_out, dtype=torch.float64)
        out[torch.arange(len(at)), torch.as_tensor(self.index)[at]] = torch.as_tensor(self.sign)[at]
        return out.to(device)

    def select(self, y: Tensor, which: Sequence[int] | np.ndarray | Tensor | None = None) -> Tensor:
        """(P, m) ``spec . y`` for output values ``y`` (P, n_out), rows ``which`` (all when None)."""
        index, sign = torch.as_tensor(self.index), torch.as_tensor(self.sign, dtype=y.dtype)
        if which is not None:
            at = torch.as_tensor(np.asarray(which, dtype=np.int64))
            index, sign = index[at], sign[at]
        return y[:, index.to(y.device)] * sign.to(y.device)

    def usage(self) -> Tensor:
        """(1, n_out) float64: how many rows read each output (the column sums of |spec|), all that
        `gridverify.bounds.crown.needed_neurons` and the LP tightening read of the rows."""
        return torch.as_tensor(np.bincount(self.index, minlength=self.n_out), dtype=torch.float64)[None]

    @staticmethod
    def from_dense(spec: Tensor, owner: np.ndarray | None = None) -> Rows:
        """The rows of a dense matrix whose every row is +-1 at one output (ValueError otherwise)."""
        spec = spec.detach().cpu().to(torch.float64)
        nonzero = spec.ne(0)
        index = spec.abs().argmax(1)
        sign = spec[torch.arange(spec.shape[0]), index]
        if bool((nonzero.sum(1) != 1).any()) or bool((sign.abs() != 1).any()):
            raise ValueError("every specification row must be +1 or -1 at a single output")
        owner = np.arange(spec.shape[0]) if owner is None else owner
        return Rows(index.numpy(), sign.numpy(), owner, spec.shape[1])


def verify(
    case: str | Path | Case,
    region: str | Region | None = None,
    families: Sequence[str] | None = None,
    config: VerifyConfig = VerifyConfig(),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Certificate:
    """Verdicts, certified bounds and witnesses for every constraint of ``families`` (default: all);
    ``log`` gets one line per stage (tightening, screen, decide, narrow, replay)."""
    log = log or (lambda line: None)
    deadline = Deadline.after(config.timeout_s)
    case = load_case(case) if isinstance(case, (str, Path)) else case
    region = resolve_region(case, region)
    constraints, graph, rows = prepare(case, families)
    box = tuple(t.to(config.device) for t in region.box(config.dtype))
    thresholds = torch.tensor([config.tolerance_of(constraints[k].family) for k in rows.owner])
    search_s = deadline.remaining_s()
    if config.replay:  # the power flows of the replay come out of the same budget
        search_s *= 1.0 - config.replay_share
    results = _search(graph, box, rows, thresholds, config, Deadline.after(search_s), progress, log)
    records = [
        _record(c, [results[i] for i in np.flatnonzero(rows.owner == k)], config.tolerance_of(c.family))
        for k, c in enumerate(constraints)
    ]
    records = _confirmed(graph, region, records, Budget.of(graph, config.memory_gb))
    if config.replay:
        began = time.monotonic()
        records = replay_records(case, records, deadline=deadline)
        done = sum(r.replay is not None for r in records)
        seconds = time.monotonic() - began
        log(f"replay: {done} violated constraints replayed in pandapower ({seconds:.1f} s)")
    return Certificate(
        case=case.name,
        surrogate=case.surrogate.fingerprint(),
        region=region.to_dict(),
        settings=config.settings(),
        records=tuple(records),
        seconds=deadline.elapsed_s(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        gridverify=version("gridverify"),
        input_names=_input_names(case),
    )


# -- inputs ---------------------------------------------------------------------------------------------
def resolve_region(case: Case, region: str | Region | None) -> Region:
    """The case's default region, a parsed text, or the given region; warns outside the training region."""
    if region is None:
        return case.region
    chosen = Region.parse(region, case.data) if isinstance(region, str) else region
    train = case.region
    if np.any(chosen.lower < train.lower - 1e-12) or np.any(chosen.upper > train.upper + 1e-12):
        warnings.warn(
            f"region {chosen.describe()} leaves the surrogate's training region {train.describe()}: "
            "answers there describe extrapolation",
            RegionWarning,
            stacklevel=2,
        )
    return chosen


def select_constraints(case: Case, families: Sequence[str] | None) -> list[Constraint]:
    """The case's constraints of ``families`` (all present families when None), in family order."""
    present = case.problem.families
    wanted = tuple(present if families is None else families)
    unknown = [f for f in wanted if f not in NAMES]
    if unknown:
        raise ValueError(f"unknown constraint families {unknown}; known: {list(NAMES)}")
    empty = [f for f in wanted if f not in present]
    if empty and families is not None and len(empty) == len(wanted):
        raise ValueError(f"case {case.name} has no constraints in {empty} (present: {list(present)})")
    return [c for f in present if f in wanted for c in case.problem.family(f)]


def prepare(case: Case, families: Sequence[str] | None) -> tuple[list[Constraint], Graph, Rows]:
    """The selected constraints, the graph from the load box to their values (one output), their rows."""
    constraints = select_constraints(case, families)
    graph = violation_graph(case.graph, _families(constraints))
    return constraints, graph, spec_rows(constraints, graph.nodes[graph.outputs[0][1]].size)


def _families(constraints: Sequence[Constraint]) -> list[str]:
    return list(dict.fromkeys(c.family for c in constraints))


def violation_graph(graph: Graph, families: Sequence[str]) -> Graph:
    """``graph`` with one output: the concatenation of the families' outputs, in the given order."""
    b, vals = rebuild(graph)
    ids = graph.output_ids
    parts = [vals[ids[f]] for f in families]
    return b.build({OUTPUT: parts[0] if len(parts) == 1 else b.concat(parts, axis=0)})


def spec_rows(constraints: Sequence[Constraint], n_out: int) -> Rows:
    """``+e_k`` per constraint and also ``-e_k`` for equalities (violation ``|h|``)."""
    index, sign = [], []
    for k, c in enumerate(constraints):
        signs = (1.0, -1.0) if c.kind is Kind.EQUALITY else (1.0,)
        index += [k] * len(signs)
        sign += signs
    at = np.array(index, dtype=np.int64)
    return Rows(at, np.array(sign, dtype=np.float64), at.copy(), n_out)


def _input_names(case: Case) -> tuple[str, ...]:
    buses = case.data.ids.bus[case.data.loads.bus]
    return tuple(f"pd_pu[bus {b}]" for b in buses) + tuple(f"qd_pu[bus {b}]" for b in buses)


# -- search ---------------------------------------------------------------------------------------------
def _search(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows,
    thresholds: Tensor,
    config: VerifyConfig,
    deadline: Deadline,
    progress: bool,
    log: Callable[[str], None],
) -> list[SpecResult]:
    """Screen every row, decide the undecided ones, then narrow the violated ones by ``deadline``, each
    stage its share of the deadline's time (module docstring); ``thresholds`` (R,): each row's tolerance.
    Times in the results count from the deadline's start."""
    base = tightened_base(graph, box, rows, config, deadline)
    what = "done" if base is not None else "nothing to tighten"
    log(f"tightening: {what} ({deadline.elapsed_s():.1f} s)")
    falsify = Deadline.after(config.attack_share * deadline.timeout_s)
    decide_by = deadline.until(deadline.start + deadline.timeout_s * (1.0 - config.narrow_share))
    results = screen(graph, box, rows, thresholds, config, falsify, base=base, log=log, deadline=decide_by)
    log(f"screen: {_tally(results)} ({deadline.elapsed_s():.1f} s)")
    # rows whose first bound is NaN (a grid or surrogate with undefined numbers) are not searched
    undecided = [i for i, r in enumerate(results) if r.verdict is Verdict.UNKNOWN and r.upper == r.upper]
    _decide_in_rounds(
        graph, box, rows, results, undecided, thresholds, decide_by, config, progress, base, log
    )
    violated = [i for i, r in enumerate(results) if r.verdict is Verdict.VIOLATED and r.upper > r.worst]
    violated.sort(key=lambda i: results[i].worst, reverse=True)  # the worst violations are narrowed first
    narrowed = list(results)
    share, patterns = config.narrow_lp
    search = replace(config.search, lp_cut=share, lp_patterns=patterns, root=NARROW_ROOT, bound=NARROW_BOUND)
    narrowing = replace(config, search=search)
    _in_chunks(graph, box, rows, narrowed, violated, None, deadline, narrowing, progress, base, log)
    log(f"narrow: {len(violated)} violated rows ({deadline.elapsed_s():.1f} s)")
    return [r if n is r else _narrowed(r, n) for r, n in zip(results, narrowed)]


DECIDE_ROUNDS = 4


def _decide_in_rounds(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows,
    results: list[SpecResult],
    which: list[int],
    thresholds: Tensor,
    deadline: Deadline,
    config: VerifyConfig,
    progress: bool,
    base: Base | None,
    log: Callable[[str], None],
) -> None:
    """Branch and bound on the open rows ``which`` in rounds until ``deadline``: first every row for at most
    `row_alone_s` (most rows settle in it), then the rows still open share the time left, again while time
    is left (a chunk's share is the time left over the chunks left, so time that later rows leave unused
    comes back only in the next round), up to `DECIDE_ROUNDS` rounds. A chunk's search goes on in the next
    round from where it stopped (`Paused`), so a row's turns add up: searched anew each round, case57's
    p_balance[bus 34] (settles alone in 3.9 s) stayed open after turns of 2 and 2.7 s (case57 at 120 s
    without replay: 5 unknown rows, 2 with the searches kept; one run each). case118 at 600 s:
    thermal_from[branch 155] needs 59 s alone; the second round gave it 39 s, then the 9 rows after it
    settled and left 244 s. Ordering the later rounds hardest last (certified
    gap over found margin) left case57 with 5 and 6 unknown rows at 120 s against 2 and 3 in the screen's
    order: its near-threshold rows are the hardest by that measure and the ones a few more seconds
    settle."""
    cap = config.row_alone_s if config.row_alone_s > 0 else math.inf
    paused = Paused(config.keep_share * config.memory_gb * 2**30)
    for n in range(DECIDE_ROUNDS):
        if not which or deadline.remaining_s() < config.min_chunk_s:
            return
        _in_chunks(
            graph, box, rows, results, which, thresholds, deadline, config, progress, base, log, cap, paused
        )
        kept = f", {len(paused.searches)} searches kept" if paused.searches else ""
        log(
            f"decide round {n + 1}: {len(which)} rows; {_tally(results)}{kept} ({deadline.elapsed_s():.1f} s)"
        )
        which = [i for i in which if results[i].verdict is Verdict.UNKNOWN]
        cap = math.inf


@dataclass
class Paused:
    """Searches stopped at the end of their turn, by their rows (`_in_chunks`), to go on in the next: their
    open domains together hold at most ``memory_bytes`` (``VerifyConfig.keep_share`` of the budget: the
    running search has three quarters, `sized`); a search that does not fit starts anew next round."""

    memory_bytes: float
    searches: dict[tuple[int, ...], Search] = field(default_factory=dict)

    def keep(self, chunk: Sequence[int], search: Search) -> None:
        held = sum(s.open_bytes for s in self.searches.values())
        if held + search.open_bytes <= self.memory_bytes:
            self.searches[tuple(chunk)] = search

    def chunks(self, which: Sequence[int]) -> tuple[list[tuple[tuple[int, ...], list[int]]], list[int]]:
        """The kept searches that have rows in ``which`` (each its rows and those of them in ``which``, in
        the order of ``which``), and the rows of ``which`` no kept search has."""
        owner = {i: key for key in self.searches for i in key}
        kept: dict[tuple[int, ...], list[int]] = {}
        rest = []
        for i in which:
            if i in owner:
                kept.setdefault(owner[i], []).append(i)
            else:
                rest.append(i)
        return list(kept.items()), rest


def _tally(results: Sequence[SpecResult]) -> str:
    verdicts = [r.verdict for r in results]
    return ", ".join(f"{verdicts.count(v)} {v.value}" for v in Verdict) + " rows"


# -- memory ---------------------------------------------------------------------------------------------
_OOM = re.compile(r"out of memory|can't allocate memory|not enough memory|std::bad_alloc", re.IGNORECASE)


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: numpy's MemoryError or torch's RuntimeError (under an
    address-space cap, `gridverify verify --memory-gb`)."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and _OOM.search(str(err)) is not None
    )


@dataclass(frozen=True)
class Budget:
    """How much of a case fits in ``config.memory_gb`` at a time. A forward pass keeps every node's value
    (``point_bytes`` per point, every node of the lowered graph in float64); a backward CROWN pass keeps
    coefficients (rows x node size) for the nodes between the output and the inputs. Each stage takes a share
    of the budget: the screen's CROWN blocks and point chunks a quarter, the falsifier's points (with their
    gradients) a quarter, the search (`SearchConfig.memory_gb`) three quarters (the screen's tensors are gone
    by then)."""

    memory_bytes: float
    point_bytes: int  # float64 values of every node, per point
    n_out: int

    @staticmethod
    def of(graph: Graph, memory_gb: float) -> Budget:
        nodes = lower_fused(graph).nodes
        total = sum(n.size for n in nodes)
        return Budget(memory_gb * 2**30, 8 * max(total, 1), graph.nodes[graph.outputs[0][1]].size)

    @staticmethod
    def of_nodes(graph: Graph, nodes: frozenset[int], memory_bytes: float) -> Budget:
        """The budget of a backward pass over ``nodes`` of the (lowered) ``graph`` only."""
        total = sum(graph.nodes[i].size for i in nodes)
        return Budget(memory_bytes, 8 * max(total, 1), graph.nodes[graph.outputs[0][1]].size)

    def crown_rows(self) -> int:
        """Rows per backward pass of the screen's CROWN (two coefficient rows per row, about three copies
        alive through a relaxation)."""
        return int(np.clip(self.memory_bytes / 4 / (2 * 3 * self.point_bytes), 8, ROWS))

    def points(self, rows: int) -> int:
        """Points per forward pass of the screen's pool when ``rows`` rows are read off each point."""
        return max(1, int(self.memory_bytes / 4 / (self.point_bytes + 8 * rows)))

    def attack_points(self, most: int) -> int:
        """Points per forward-and-backward pass of the falsifier (values, gradients and temporaries: about
        four copies), at most ``most``."""
        return int(np.clip(self.memory_bytes / 4 / (4 * self.point_bytes), 16, most))

    def dense_rows(self) -> int:
        """Rows of a dense block (m, n_out) in a sixteenth of the budget."""
        return max(1, int(self.memory_bytes / 16 / (8 * self.n_out)))


def sized(config: VerifyConfig, budget: Budget) -> VerifyConfig:
    """``config`` with the falsifiers' points per pass and the search's memory fitted to ``budget``."""
    search = config.search
    search = replace(
        search,
        memory_gb=0.75 * config.memory_gb,
        attack=replace(search.attack, max_points=budget.attack_points(search.attack.max_points)),
    )
    attack = replace(config.attack, max_points=budget.attack_points(config.attack.max_points))
    return replace(config, search=search, attack=attack)


def tightened_base(
    graph: Graph, box: tuple[Tensor, Tensor], spec: Tensor | Rows, config: VerifyConfig, deadline: Deadline
) -> Base | None:
    """Intervals over the whole region of the surrogate's boundary neurons (its pre-sigmoid outputs and the
    linear functions of them the constraints read) and of the relu layers above them, by LP
    (`gridverify.bab.lp_tighten`) within ``config.tighten_share`` of the deadline's time, shared by the
    screen and every chunk's search (``base``), and cached; None when off or without highspy. The LP reads
    of the rows only which outputs they use: `Rows` pass one row of their usage (`Rows.usage`), not R dense
    rows."""
    if config.tighten_share <= 0:
        return None
    try:
        import highspy  # noqa: F401
    except ImportError:
        return None
    budget = config.tighten_share * deadline.timeout_s
    rows = spec.usage() if isinstance(spec, Rows) else spec
    try:
        return lp_base(graph, box, rows, OUTPUT, budget_s=budget, cache_dir=config.tighten_cache)
    except (RuntimeError, ValueError, MemoryError) as err:  # an optional speed-up: the run goes on without
        warnings.warn(f"LP tightening skipped: {err}", RuntimeWarning, stacklevel=2)
        return None


def _in_chunks(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows,
    results: list[SpecResult],
    which: list[int],
    thresholds: Tensor | None,
    deadline: Deadline,
    config: VerifyConfig,
    progress: bool,
    base: Base | None = None,
    log: Callable[[str], None] | None = None,
    cap_s: float = math.inf,
    paused: Paused | None = None,
) -> None:
    """Branch and bound on rows ``which``, ``config.chunk`` at a time, each chunk with an equal share of the
    time left before ``deadline`` (at most ``cap_s`` per row); rows of chunks that no time is left for keep
    their results, and so do the rows of a chunk that runs out of memory (`out_of_memory`). Result times
    count from the deadline's start. ``thresholds`` (R,) decides rows (a row searched before keeps the
    tighter of both intervals); None narrows them (maximise without a threshold). With ``paused``, rows of
    a search kept there go on in it (their own chunk, first), and a search that leaves a row open is kept
    for the next call."""
    config = sized(config, Budget.of(graph, config.memory_gb))
    resumed, which = paused.chunks(which) if paused is not None else ([], list(which))
    size = chunk_size(len(which) + sum(len(c) for _, c in resumed), deadline.remaining_s(), config)
    chunks = [(None, key, chunk) for key, chunk in resumed] + [
        (part, tuple(chunk), chunk) for part, chunk in _family_chunks(graph, rows, which, size)
    ]
    for n, (part, key, chunk) in enumerate(chunks):
        left = deadline.end - time.monotonic()
        if left < config.min_chunk_s:
            return
        share = min(left / (len(chunks) - n), cap_s * len(chunk))
        offset = deadline.elapsed_s()
        threshold = None if thresholds is None else thresholds[list(key)]
        turn = Deadline.after(share)  # the root of a new search comes out of its share too
        try:
            if part is None:  # kept from the last round (`Paused`): it goes on from where it stopped
                search = paused.searches.pop(key)  # type: ignore[union-attr]
            else:
                search = _begin(part, box, rows, results, chunk, threshold, config, turn, progress, base)
            found = search.go(turn)
        except (MemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            if log is not None:
                log(f"search: {len(chunk)} rows out of memory, they keep their screen's answer")
            continue
        for i, r in zip(key, found):
            if i not in chunk:
                continue
            history = tuple((offset + t, u) for t, u in r.history)
            r = replace(r, spec=i, seconds=offset + r.seconds, history=history)
            if threshold is None:
                results[i] = replace(r, verdict=results[i].verdict)
            else:  # the verdict follows from the new interval, which the old one can only narrow
                results[i] = replace(_narrowed(results[i], r), verdict=r.verdict)
        still_open = any(r.verdict is Verdict.UNKNOWN for r in found)
        if paused is not None and still_open and not any(r.stopped.startswith("memory") for r in found):
            paused.keep(key, search)


def _begin(
    part: tuple[Graph, int, int],
    box: tuple[Tensor, Tensor],
    rows: Rows,
    results: list[SpecResult],
    chunk: list[int],
    threshold: Tensor | None,
    config: VerifyConfig,
    turn: Deadline,
    progress: bool,
    base: Base | None,
) -> Search:
    """The root of a chunk's search on its family's graph ``part`` (`_family_chunks`), started from the
    screen's worst loads of its rows, its root alpha-CROWN (if ``config.search.root`` has steps) capped at
    ``root_share`` of the ``turn``."""
    root = replace(config.search.root, timeout_s=config.root_share * turn.timeout_s)
    search = replace(config.search, root=root, progress=progress)
    starts = torch.stack([results[i].witness for i in chunk]).unsqueeze(1)
    sub, first, end = part
    at = np.asarray(chunk)
    spec = Rows(rows.index[at] - first, rows.sign[at], rows.owner[at], end - first).block(
        np.arange(len(at)), box[0].device
    )
    search = replace(search, root=fitting(sub, OUTPUT, spec, search.root, search.memory_gb))
    prepared = Prepared.of(sub, box, spec, threshold, OUTPUT, base)
    return begin(prepared, search, turn, starts.to(box[0]))


def chunk_size(rows: int, left_s: float, config: VerifyConfig) -> int:
    """Rows per branch-and-bound run: one where every row can have ``config.row_alone_s`` seconds to
    itself, more (up to ``config.chunk``) as the time per row shrinks. Rows searched together share one
    pool of domains and one branching, and on case118's thermal rows that costs more than the runs'
    overheads: thermal_to rows 11, 49 and 181 each settle alone (5, 4 and 3 s), none of the first two in
    20 s together."""
    if config.row_alone_s <= 0:
        return config.chunk
    return int(np.clip(np.ceil(rows * config.row_alone_s / max(left_s, 1e-9)), 1, config.chunk))


def _family_chunks(
    graph: Graph, rows: Rows, which: list[int], size: int
) -> list[tuple[tuple[Graph, int, int], list[int]]]:
    """``which`` in chunks of at most ``size`` rows of one family each, each with its family's graph (the
    lowered graph with the family's node as its output ``OUTPUT``) and the entries ``first:end`` of the
    violation output its rows read; a chunk is placed where its first row was in ``which`` (worst first
    stays worst first). A search on the family's node bounds the family's part of the graph only (its
    intermediate bounds and alpha parameters are not those of every family)."""
    g = lower_fused(graph)
    out = g.output_ids[OUTPUT]
    parts = _output_parts(g, out)
    ends = np.array([end for _, _, end in parts])
    graphs = [g if node == out else replace(g, outputs=((OUTPUT, node),)) for node, _, _ in parts]
    open_: dict[int, list[int]] = {}
    found: list[tuple[int, list[int]]] = []  # (part, rows), in the order of each chunk's first row
    for i in which:
        k = int(np.searchsorted(ends, rows.index[i], side="right"))
        if k not in open_:
            open_[k] = []
            found.append((k, open_[k]))
        open_[k].append(i)
        if len(open_[k]) == size:
            del open_[k]
    return [((graphs[k], parts[k][1], parts[k][2]), chunk) for k, chunk in found]


def screen(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows | Tensor,
    thresholds: Tensor,
    config: VerifyConfig = VerifyConfig(),
    until: Deadline | None = None,
    base: Base | None = None,
    log: Callable[[str], None] | None = None,
    deadline: Deadline | None = None,
) -> list[SpecResult]:
    """Every row's first interval: one CROWN pass bounds it; a pool of loads (the box centre,
    ``config.samples`` uniform loads, and per row the corner of the box that maximises its CROWN lower
    line) evaluated in float64 gives each row a first worst value; then the falsifier
    (`gridverify.bab.attack`) climbs every row CROWN does not prove, started from that row's best
    ``config.pool_starts`` loads of the pool (neighbouring rows share their worst loads this way) and its
    worst load so far, in two passes (a quick one that reaches every row, then ``config.attack`` on the rows
    still undecided, ``config.climb_violated``: on all; at most ``config.climb_share`` of the budget) until
    ``until``; after each, every row is evaluated at every row's new point. Rows CROWN proves are verified,
    rows a load violates are violated.
    The full pass leaves violated rows to the narrowing searches: on case118 (600 s) it took 70 s over its
    507 open rows and violated none that the quick pass had not (481); case57 13.5 s, case30 16.3 s,
    case14 3.8 s, none either (on the 26 undecided rows alone, case118's takes 22 s).

    Memory (``config.memory_gb``, `Budget`): CROWN runs as one pass of intermediate bounds and then
    blocks of rows; the pool is evaluated in chunks of points, keeping per row its running worst value
    and best starts (never a points x rows table); the falsifier takes blocks of rows and a number of
    points per pass that fit.

    ``deadline``: blocks of rows CROWN has not reached by then keep their interval (IBP)
    bound, and chunks of the pool not evaluated by then are skipped (the box centre always is), so that a
    case too large for its budget still ends with sound, looser answers."""
    start = time.monotonic()
    rows = rows if isinstance(rows, Rows) else Rows.from_dense(rows)
    budget = Budget.of(graph, config.memory_gb)
    config = sized(config, budget)
    log = log or (lambda line: None)
    upper, corners = screen_bounds(graph, box, rows, budget, base, log, deadline)
    log(f"screen: CROWN bounds of {len(rows)} rows ({time.monotonic() - start:.1f} s)")
    lo, hi = (t.cpu().to(torch.float64) for t in box)
    pool = _pool(lo, hi, config.samples)
    x = pool if corners is None else torch.cat([pool, corners])
    del corners
    thr = thresholds.to(torch.float64)
    open_rows = torch.nonzero(upper > thr).squeeze(1)
    k = min(config.pool_starts, x.shape[0])
    worst, at, top = _scan(graph, x, rows, budget, open_rows, k, deadline)
    witness = x[at]
    pool_starts = x[top.T] if open_rows.numel() else None  # (open, k, n)
    violated = int((worst > thr).sum())
    log(f"screen: {x.shape[0]} loads, {violated} rows violated ({time.monotonic() - start:.1f} s)")
    del x
    # a quick pass gives every open row its turn; then the full search climbs the rows no load violates yet
    # (violated rows are narrowed later, by searches with falsifiers of their own)
    quick = replace(config.attack, restarts=4, corners=2, steps=20, rounds=1)
    for cfg in (quick, config.attack) if open_rows.numel() and config.attack.steps > 0 else ():
        if until is not None and until.passed():
            break
        if cfg is not quick:
            climb_s = config.climb_share * config.timeout_s
            until = Deadline.after(climb_s) if until is None else until.until(time.monotonic() + climb_s)
            if not config.climb_violated:
                keep = worst[open_rows] <= thr[open_rows]
                open_rows, pool_starts = open_rows[keep], pool_starts[keep]  # type: ignore[index]
                if not open_rows.numel():
                    break
        starts = torch.cat([pool_starts, witness[open_rows].unsqueeze(1)], 1)  # type: ignore[list-item]
        found = _falsify_rows(graph, box, rows, open_rows, starts, cfg, until, budget)
        # every row at every row's new point: neighbouring rows often share their worst loads
        best, at, _ = _scan(graph, found, rows, budget)  # (R,) over the open rows' points
        better = best > worst
        worst, witness = torch.where(better, best, worst), torch.where(better[:, None], found[at], witness)
        violated = int((worst > thr).sum())
        log(f"screen: falsifier pass, {violated} rows violated ({time.monotonic() - start:.1f} s)")
    seconds = time.monotonic() - start
    out = []
    for i, (u, w, t) in enumerate(zip(upper.tolist(), worst.tolist(), thr.tolist())):
        out.append(
            SpecResult(i, decide(u, w, t), max(u, w), w, witness[i], 0, seconds, ((seconds, max(u, w)),))
        )
    return out


def screen_bounds(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows,
    budget: Budget,
    base: Base | None = None,
    log: Callable[[str], None] | None = None,
    deadline: Deadline | None = None,
) -> tuple[Tensor, Tensor]:
    """CROWN upper bounds (R,) float64 CPU of every row over the box, and per row the corner of the box
    that maximises its CROWN lower line (R, n) (`gridverify.bab.line_corners`): the bounds of
    ``crown(graph, box, OUTPUT, rows.spec, base=base)`` without its dense matrix.

    The output is the concatenation of the families' outputs, and a row reads one entry: each family's
    rows are bounded on that family's node, so a backward pass walks the family's own part of the graph
    with coefficients as wide as the family (not all 14421 outputs of case1354, most of them zero).
    Intermediate bounds once (`needed_neurons` of all rows' usage), then per family `final_bounds` per
    block of rows that fits the budget (`Budget.crown_rows`), intersected with the family's interval (the
    IBP of a selection is a gather). The numbers of one pass on the whole output (up to a few ulps of the
    sums' rounding on rare rows): a zero coefficient adds nothing where families meet, and the
    intermediate bounds are those of the whole output (a family's rows alone would leave out neurons whose
    coefficients cancel for that family, and get other intervals). A block that runs out of memory is
    split; a single row that does keeps its interval bound (and the box centre as its corner), and so do
    the rows of blocks not reached by ``deadline``."""
    g, ibox, out = resolve(graph, box, OUTPUT)
    relaxer = node_relaxer(g)
    like = next(iter(ibox.values()))[0]
    plan = make_plan(g, out)
    masks = needed_neurons(g, plan, out, rows.usage().to(like).reshape(1, 1, *g.nodes[out].shape))
    intervals, _ = propagate(g, ibox, plan, relaxer, base=base, masks=masks)
    olo, ohi = (t.reshape(t.shape[0], -1)[0].cpu().to(torch.float64) for t in intervals[out])  # type: ignore[index]
    index = torch.as_tensor(rows.index)
    ibp_upper = torch.where(torch.as_tensor(rows.sign) > 0, ohi[index], -olo[index])
    upper = ibp_upper.clone()
    lo, hi = (t.cpu().to(torch.float64) for t in box)
    corners = ((lo + hi) / 2).expand(len(rows), -1).clone()
    for node, first, end in _output_parts(g, out):
        mine = torch.nonzero((index >= first) & (index < end)).squeeze(1)
        if not mine.numel():
            continue
        at = mine.numpy()
        part = Rows(rows.index[at] - first, rows.sign[at], rows.owner[at], end - first)
        shape = g.nodes[node].shape
        part_ibp = ibp_upper[mine]
        size = Budget.of_nodes(g, frozenset(g.ancestors(node)), budget.memory_bytes).crown_rows()
        todo = [(s, min(s + size, len(part))) for s in range(0, len(part), size)]
        while todo:
            if deadline is not None and deadline.passed():
                if log is not None:
                    log(f"screen: out of time: {sum(e - s for s, e in todo)} rows keep their interval bound")
                return upper, corners
            s, e = todo.pop(0)
            try:
                c = part.block(np.arange(s, e), like.device).to(like).reshape(1, e - s, *shape)
                _, hi_c, linear = final_bounds(g, ibox, node, c, intervals, relaxer)
                upper[mine[s:e]] = torch.minimum(hi_c[0].cpu().to(torch.float64), part_ibp[s:e])
                found = line_corners(linear, graph, lo, hi)
                if found is not None:
                    corners[mine[s:e]] = found.cpu().to(torch.float64)
            except (MemoryError, RuntimeError) as err:
                if not out_of_memory(err):
                    raise
                if e - s > 1:
                    half = (s + e) // 2
                    todo[:0] = [(s, half), (half, e)]
                elif log is not None:
                    log(f"screen: a row of node {node} ran out of memory in CROWN: it keeps its interval")
        if log is not None:
            log(f"screen: CROWN on node {node}: {len(part)} rows, blocks of {size}")
    return upper, corners


def _output_parts(g: Graph, out: int) -> list[tuple[int, int, int]]:
    """(node, first, end): the nodes whose values are the output's entries ``first:end`` (the families'
    outputs when the output is their concatenation, else the output itself)."""
    node = g.nodes[out]
    parts = [g.nodes[j] for j in node.inputs]
    if node.op != "concat" or len(node.shape) != 1 or any(len(p.shape) != 1 for p in parts):
        return [(out, 0, node.size)]
    spans, first = [], 0
    for j, p in zip(node.inputs, parts):
        spans.append((j, first, first + p.size))
        first += p.size
    return spans


def _scan(
    graph: Graph,
    x: Tensor,
    rows: Rows,
    budget: Budget,
    open_rows: Tensor | None = None,
    k: int = 0,
    deadline: Deadline | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Every row at every point of ``x`` (P, n) in float64 on the CPU, a chunk of points at a time: per row
    the worst value (R,) and the point it is at (R,) (the first such point), and for the rows
    ``open_rows`` the indices (k, open) of their ``k`` best points. Chunks after the first are skipped once
    ``deadline`` has passed."""
    chunk = budget.points(len(rows))
    worst = torch.full((len(rows),), -torch.inf, dtype=torch.float64)
    at = torch.zeros(len(rows), dtype=torch.long)
    n_open = 0 if open_rows is None else open_rows.numel()
    top_v = torch.empty(0, n_open, dtype=torch.float64)
    top_i = torch.empty(0, n_open, dtype=torch.long)
    for s in range(0, x.shape[0], chunk):
        if s > 0 and deadline is not None and deadline.passed():
            break
        y = graph.forward(x[s : s + chunk])[OUTPUT]
        v = rows.select(y.reshape(y.shape[0], -1).cpu().to(torch.float64))  # (c, R)
        del y
        best, where = v.max(0)
        better = (best > worst) | (best.isnan() & ~worst.isnan())
        worst, at = torch.where(better, best, worst), torch.where(better, where + s, at)
        if n_open and k > 0:
            top_v = torch.cat([top_v, v[:, open_rows]])
            top_i = torch.cat([top_i, torch.arange(s, s + v.shape[0])[:, None].expand(-1, n_open)])
            keep = top_v.topk(min(k, top_v.shape[0]), dim=0).indices
            top_v, top_i = top_v.gather(0, keep), top_i.gather(0, keep)
    return worst, at, top_i


def _falsify_rows(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    rows: Rows,
    which: Tensor,
    starts: Tensor,
    cfg: AttackConfig,
    until: Deadline | None,
    budget: Budget,
) -> Tensor:
    """(m, n) float64 CPU: the falsifier's best point per row ``which`` over the box, `Budget.dense_rows`
    rows at a time; rows that no time is left for get the box centre."""
    n = len(which)
    block = budget.dense_rows()
    lo1, hi1 = box
    out = ((lo1 + hi1) / 2).cpu().to(torch.float64).expand(n, -1).clone()
    for s in range(0, n, block):
        if s > 0 and until is not None and until.passed():
            break
        part = which[s : s + block]
        spec = rows.block(part, lo1.device)
        m = len(part)
        lo, hi = lo1.expand(m, -1), hi1.expand(m, -1)
        try:
            found, _ = attack(
                graph,
                OUTPUT,
                spec,
                lo,
                hi,
                cfg,
                starts=starts[s : s + m].to(lo.device, lo.dtype),
                deadline=until,
            )
        except (MemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            continue  # these rows keep their worst load so far
        out[s : s + m] = found.cpu().to(torch.float64)
    return out


def _pool(lo: Tensor, hi: Tensor, samples: int) -> Tensor:
    """The box centre and ``samples`` uniform points (fixed seed), float64 (1 + samples, n)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(samples, lo.shape[1], generator=gen, dtype=lo.dtype)
    return torch.cat([(lo + hi) / 2, lo + (hi - lo) * u])


def _narrowed(decided: SpecResult, narrowed: SpecResult) -> SpecResult:
    """The decided verdict with the tighter interval of both stages (narrowing keeps no verdict); both
    carry times since the search started."""
    return replace(
        decided,
        upper=max(min(decided.upper, narrowed.upper), narrowed.worst, decided.worst),
        worst=max(decided.worst, narrowed.worst),
        witness=narrowed.witness if narrowed.worst > decided.worst else decided.witness,
        domains=decided.domains + narrowed.domains,
        seconds=narrowed.seconds,
        history=decided.history + narrowed.history,
    )


# -- records --------------------------------------------------------------------------------------------
def _record(constraint: Constraint, results: Sequence[SpecResult], tolerance: float) -> ConstraintRecord:
    """One record from the constraint's rows (two for an equality: the larger side decides)."""
    verdict = combine([r.verdict for r in results]).value
    top = max(results, key=lambda r: r.worst)
    return ConstraintRecord(
        name=constraint.name,
        family=constraint.family,
        kind=constraint.kind.value,
        element=constraint.element,
        unit=family(constraint.family).unit,
        tolerance=tolerance,
        verdict=verdict,
        bound=max(r.upper for r in results),
        worst=top.worst,
        witness=tuple(float(v) for v in top.witness.reshape(-1).cpu().tolist()),
        seconds=max(r.seconds for r in results),
        domains=sum(r.domains for r in results),
        history=merge_histories([r.history for r in results]),
    )


def merge_histories(histories: Sequence[Sequence[tuple]]) -> tuple[tuple[float, float], ...]:
    """``(seconds, bound)`` of the larger side at every time either side's bound changed."""
    times = sorted({h[0] for hist in histories for h in hist})
    out = []
    for t in times:
        latest = [max((h for h in hist if h[0] <= t), key=lambda h: h[0], default=None) for hist in histories]
        if all(x is not None for x in latest):
            out.append((t, max(float(x[1]) for x in latest)))  # type: ignore[index]
    return tuple(out)


def _confirmed(
    graph: Graph, region: Region, records: Sequence[ConstraintRecord], budget: Budget
) -> list[ConstraintRecord]:
    """Re-evaluate the witness of every violated record (record k is constraint k of the violation output)
    in float64 on the CPU, each distinct witness once and a chunk of them at a time; a violation that does
    not hold there, or a witness outside the region, makes the verdict unknown."""
    out = list(records)
    todo = [k for k, r in enumerate(records) if r.verdict == "violated" and r.witness is not None]
    if not todo:
        return out
    loads: dict[tuple[float, ...], int] = {}
    for k in todo:
        loads.setdefault(records[k].witness, len(loads))  # type: ignore[arg-type]
    x = torch.tensor(list(loads), dtype=torch.float64)
    chunk = max(budget.points(len(records)), 1)
    values = [
        graph.forward(x[s : s + chunk])[OUTPUT].reshape(min(chunk, len(x) - s), -1)
        for s in range(0, len(x), chunk)
    ]
    y = torch.cat(values).numpy()
    for k in todo:
        r = records[k]
        at = loads[r.witness]  # type: ignore[index]
        value = float(abs(y[at, k]) if r.kind == "equality" else y[at, k])
        if region.contains(np.asarray(r.witness, dtype=np.float64)) and value > r.tolerance:
            out[k] = replace(r, worst=value, bound=max(r.bound, value))
        else:
            out[k] = replace(r, verdict="unknown")
    return out

"""`verify`: every constraint of a case under its surrogate, over a load region, answered with certainty.

One graph from the load box to every constraint value (`gridverify.surrogate.compose`); the selected
families are concatenated into one output ``violation`` and each constraint becomes specification rows:
``+e_r`` for an inequality ``g <= 0`` (violation ``g``), ``+e_r`` and ``-e_r`` for an equality ``h = 0``
(violation ``|h|``). Three stages share the time budget:

0. *screen* (every row): one CROWN pass proves what it can (the limits a sigmoid squash keeps, most
   thermal and angle limits) and uniform loads plus the box centre, evaluated in float64, find the rows
   some load already violates;
1. *decide* (the rows still open, threshold = tolerance, `gridverify.bab.maximise`): a row stops as soon as
   its bound drops below the tolerance or a load (checked in float64) exceeds it; ``1 - narrow_share`` of
   the budget;
2. *narrow* (violated rows, worst first, no threshold): their certified intervals ``[worst found, bound]``
   are narrowed with what is left.

Before the screen, `tightened_base` bounds the surrogate's boundary neurons (pre-sigmoid outputs, and the
relu layers above them) over the whole region by LP, within ``tighten_share`` of the budget and cached per
surrogate, region and settings (`gridverify.bab.lp_tighten`); the screen's CROWN pass and every chunk's
search start from those intervals (``base``).

Branch and bound runs on ``VerifyConfig.chunk`` rows at a time, each chunk with an equal share of its
stage's time left; rows that no time is left for keep the screen's answer (on large cases with tight
budgets many rows end there, with CROWN's bound as their certified bound).

Every witness is re-evaluated in float64 on the CPU and checked to lie in the region before a ``violated``
verdict is written; violated constraints are then replayed in pandapower (`gridverify.verify.replay`).
"""

from __future__ import annotations

import datetime
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
    SearchConfig,
    SpecResult,
    Verdict,
    attack,
    combine,
    decide,
    line_corners,
    maximise,
)
from gridverify.bab.lp_tighten import DEFAULT_CACHE as TIGHTEN_CACHE
from gridverify.bab.lp_tighten import Base, lp_base
from gridverify.bounds import crown
from gridverify.grid import Constraint, Kind
from gridverify.grid.families import BALANCE, NAMES, family
from gridverify.ir import Graph
from gridverify.ir.builder import rebuild
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
    search: SearchConfig = SearchConfig()
    chunk: int = 64  # specification rows per branch-and-bound run (bounds time and memory on large cases)
    min_chunk_s: float = 1.0  # no branch-and-bound run is started with less time than this left
    root_share: float = 0.3  # of a chunk's time for its root alpha-CROWN (which the search cannot interrupt)
    samples: int = 256  # uniform loads evaluated for every row before any search
    attack: AttackConfig = AttackConfig(rounds=3)  # the screen's falsifier, on every row CROWN leaves open
    attack_share: float = 0.15  # of the budget, at most, for the screen's falsifier
    pool_starts: int = 4  # per row, the best loads of the screen's pool (any row's) start its falsifier
    replay: bool = True
    replay_share: float = 0.1  # of the budget kept for pandapower's power flows at the witnesses
    # LP tightening of the surrogate's boundary neurons before the screen (`tightened_base`)
    tighten_share: float = 0.2  # of the budget, at most (0: off)
    tighten_cache: Path | None = TIGHTEN_CACHE  # tightened intervals kept between runs (None: memory only)

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
            "tighten_share": self.tighten_share,
        }


@dataclass(frozen=True)
class Rows:
    """The specification rows of the selected constraints: row ``i`` belongs to constraint ``owner[i]``."""

    spec: Tensor  # (R, n_out)
    owner: np.ndarray  # (R,)


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
    start = time.perf_counter()
    case = load_case(case) if isinstance(case, (str, Path)) else case
    region = resolve_region(case, region)
    constraints, graph, rows = prepare(case, families)
    box = tuple(t.to(config.device) for t in region.box(config.dtype))
    thresholds = torch.tensor([config.tolerance_of(constraints[k].family) for k in rows.owner])
    search = replace(config, timeout_s=max(config.timeout_s - (time.perf_counter() - start), 0.0))
    if config.replay:  # the power flows of the replay come out of the same budget
        search = replace(search, timeout_s=search.timeout_s * (1.0 - config.replay_share))
    results = _search(graph, box, rows.spec.to(config.device), thresholds, search, progress, log)
    records = [
        _record(c, [results[i] for i in np.flatnonzero(rows.owner == k)], config.tolerance_of(c.family))
        for k, c in enumerate(constraints)
    ]
    records = [_confirmed(graph, region, r, k) for k, r in enumerate(records)]
    if config.replay:
        began = time.perf_counter()
        records = replay_records(case, records, deadline=start + config.timeout_s)
        done = sum(r.replay is not None for r in records)
        seconds = time.perf_counter() - began
        log(f"replay: {done} violated constraints replayed in pandapower ({seconds:.1f} s)")
    return Certificate(
        case=case.name,
        surrogate=case.surrogate.fingerprint(),
        region=region.to_dict(),
        settings=config.settings(),
        records=tuple(records),
        seconds=time.perf_counter() - start,
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
    spec, owner = [], []
    for k, c in enumerate(constraints):
        signs = (1.0, -1.0) if c.kind is Kind.EQUALITY else (1.0,)
        for s in signs:
            row = torch.zeros(n_out, dtype=torch.float64)
            row[k] = s
            spec.append(row)
            owner.append(k)
    return Rows(torch.stack(spec), np.array(owner))


def _input_names(case: Case) -> tuple[str, ...]:
    buses = case.data.ids.bus[case.data.loads.bus]
    return tuple(f"pd_pu[bus {b}]" for b in buses) + tuple(f"qd_pu[bus {b}]" for b in buses)


# -- search ---------------------------------------------------------------------------------------------
def _search(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    thresholds: Tensor,
    config: VerifyConfig,
    progress: bool,
    log: Callable[[str], None],
) -> list[SpecResult]:
    """Screen every row, decide the undecided ones, then narrow the violated ones (module docstring);
    ``thresholds`` (R,): each row's tolerance."""
    start = time.perf_counter()
    base = tightened_base(graph, box, spec, config)
    what = "done" if base is not None else "nothing to tighten"
    log(f"tightening: {what} ({time.perf_counter() - start:.1f} s)")
    until = time.perf_counter() + config.attack_share * config.timeout_s
    results = screen(graph, box, spec, thresholds, config, until, base=base)
    log(f"screen: {_tally(results)} ({time.perf_counter() - start:.1f} s)")
    # rows whose first bound is NaN (a grid or surrogate with undefined numbers) are not searched
    undecided = [i for i, r in enumerate(results) if r.verdict is Verdict.UNKNOWN and r.upper == r.upper]
    decide_until = start + config.timeout_s * (1.0 - config.narrow_share)
    _in_chunks(graph, box, spec, results, undecided, thresholds, decide_until, config, progress, start, base)
    log(f"decide: {len(undecided)} rows searched; {_tally(results)} ({time.perf_counter() - start:.1f} s)")
    violated = [i for i, r in enumerate(results) if r.verdict is Verdict.VIOLATED and r.upper > r.worst]
    violated.sort(key=lambda i: results[i].worst, reverse=True)  # the worst violations are narrowed first
    narrowed = list(results)
    _in_chunks(
        graph, box, spec, narrowed, violated, None, start + config.timeout_s, config, progress, start, base
    )
    log(f"narrow: {len(violated)} violated rows ({time.perf_counter() - start:.1f} s)")
    return [r if n is r else _narrowed(r, n) for r, n in zip(results, narrowed)]


def _tally(results: Sequence[SpecResult]) -> str:
    verdicts = [r.verdict for r in results]
    return ", ".join(f"{verdicts.count(v)} {v.value}" for v in Verdict) + " rows"


def tightened_base(
    graph: Graph, box: tuple[Tensor, Tensor], spec: Tensor, config: VerifyConfig
) -> Base | None:
    """Intervals over the whole region of the surrogate's boundary neurons (its pre-sigmoid outputs and the
    linear functions of them the constraints read) and of the relu layers above them, by LP
    (`gridverify.bab.lp_tighten`) within ``config.tighten_share`` of the budget, shared by the screen and
    every chunk's search (``base``), and cached; None when off or without highspy."""
    if config.tighten_share <= 0:
        return None
    try:
        import highspy  # noqa: F401
    except ImportError:
        return None
    budget = config.tighten_share * config.timeout_s
    try:
        return lp_base(graph, box, spec, OUTPUT, budget_s=budget, cache_dir=config.tighten_cache)
    except (RuntimeError, ValueError, MemoryError) as err:  # an optional speed-up: the run goes on without
        warnings.warn(f"LP tightening skipped: {err}", RuntimeWarning, stacklevel=2)
        return None


def _in_chunks(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    results: list[SpecResult],
    rows: list[int],
    thresholds: Tensor | None,
    until: float,
    config: VerifyConfig,
    progress: bool,
    start: float,
    base: Base | None = None,
) -> None:
    """Branch and bound on ``rows``, ``config.chunk`` at a time, each chunk with an equal share of the time
    left before ``until`` (perf_counter); rows of chunks that no time is left for keep their results.
    ``thresholds`` (R,) decides rows; None narrows them (maximise without a threshold)."""
    chunks = [rows[k : k + config.chunk] for k in range(0, len(rows), config.chunk)]
    for n, chunk in enumerate(chunks):
        left = until - time.perf_counter()
        if left < config.min_chunk_s:
            return
        share = left / (len(chunks) - n)
        root = replace(config.search.root, timeout_s=config.root_share * share)
        search = replace(config.search, timeout_s=share, root=root, progress=progress)
        offset = time.perf_counter() - start
        threshold = None if thresholds is None else thresholds[chunk]
        starts = torch.stack([results[i].witness for i in chunk]).unsqueeze(1)  # the screen's worst loads
        found = maximise(
            graph, box, spec[chunk], threshold, OUTPUT, search, base=base, starts=starts.to(box[0])
        )
        for i, r in zip(chunk, found):
            verdict = results[i].verdict if threshold is None else r.verdict
            history = tuple((offset + t, u) for t, u in r.history)
            results[i] = replace(r, spec=i, verdict=verdict, seconds=offset + r.seconds, history=history)


def screen(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    thresholds: Tensor,
    config: VerifyConfig = VerifyConfig(),
    until: float | None = None,
    base: Base | None = None,
) -> list[SpecResult]:
    """Every row's first interval: one CROWN pass bounds it; a pool of loads (the box centre,
    ``config.samples`` uniform loads, and per row the corner of the box that maximises its CROWN lower
    line) evaluated in float64 gives each row a first worst value; then the falsifier
    (`gridverify.bab.attack`) climbs every row CROWN does not prove, started from that row's best
    ``config.pool_starts`` loads of the pool (neighbouring rows share their worst loads this way) and its
    worst load so far, in two passes (a quick one that reaches every row, then ``config.attack``) until
    ``until`` (perf_counter); after each, every row is evaluated at every row's new point. Rows CROWN
    proves are verified, rows a load violates are violated."""
    start = time.perf_counter()
    bounds = crown(graph, box, output=OUTPUT, spec=spec, base=base)
    upper = bounds.upper[0].cpu().to(torch.float64)
    lo, hi = (t.cpu().to(torch.float64) for t in box)
    corners = line_corners(bounds.linear, graph, lo, hi)
    x = (
        _pool(lo, hi, config.samples)
        if corners is None
        else torch.cat([_pool(lo, hi, config.samples), corners])
    )
    values = _values(graph, x, spec)  # (P, R)
    worst, at = values.max(0)
    witness = x[at]
    thr = thresholds.to(torch.float64)
    open_rows = torch.nonzero(upper > thr).squeeze(1)
    k = min(config.pool_starts, x.shape[0])
    pool_starts = x[values[:, open_rows].topk(k, dim=0).indices.T] if open_rows.numel() else None
    # a quick pass gives every open row its turn before the full search spends what time is left
    quick = replace(config.attack, restarts=4, corners=2, steps=20, rounds=1)
    for cfg in (quick, config.attack) if open_rows.numel() and config.attack.steps > 0 else ():
        if until is not None and time.perf_counter() >= until:
            break
        starts = torch.cat([pool_starts, witness[open_rows].unsqueeze(1)], 1)  # type: ignore[list-item]
        found = _falsify_rows(graph, box, spec[open_rows.to(box[0].device)], starts, cfg, until)
        # every row at every row's new point: neighbouring rows often share their worst loads
        best, at = _values(graph, found, spec).max(0)  # (R,) over the open rows' points
        better = best > worst
        worst, witness = torch.where(better, best, worst), torch.where(better[:, None], found[at], witness)
    seconds = time.perf_counter() - start
    out = []
    for i, (u, w, t) in enumerate(zip(upper.tolist(), worst.tolist(), thr.tolist())):
        out.append(
            SpecResult(i, decide(u, w, t), max(u, w), w, witness[i], 0, seconds, ((seconds, max(u, w)),))
        )
    return out


def _falsify_rows(
    graph: Graph,
    box: tuple[Tensor, Tensor],
    spec: Tensor,
    starts: Tensor,
    cfg: AttackConfig,
    until: float | None,
) -> Tensor:
    """(R, n) float64 CPU: the falsifier's best point per row of ``spec`` over the box."""
    n = spec.shape[0]
    lo, hi = box[0].expand(n, -1), box[1].expand(n, -1)
    found, _ = attack(graph, OUTPUT, spec, lo, hi, cfg, starts=starts.to(lo.device, lo.dtype), deadline=until)
    return found.cpu().to(torch.float64)


def _pool(lo: Tensor, hi: Tensor, samples: int) -> Tensor:
    """The box centre and ``samples`` uniform points (fixed seed), float64 (1 + samples, n)."""
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(samples, lo.shape[1], generator=gen, dtype=lo.dtype)
    return torch.cat([(lo + hi) / 2, lo + (hi - lo) * u])


def _values(graph: Graph, x: Tensor, spec: Tensor, chunk: int = 4096) -> Tensor:
    """(P, R) ``spec . y(x)`` in float64 on the CPU, in chunks of points."""
    c = spec.cpu().to(torch.float64).T
    parts = [
        graph.forward(x[k : k + chunk])[OUTPUT].reshape(-1, c.shape[0]) @ c for k in range(0, len(x), chunk)
    ]
    return torch.cat(parts)


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


def _confirmed(graph: Graph, region: Region, record: ConstraintRecord, k: int) -> ConstraintRecord:
    """Re-evaluate the witness (constraint ``k`` of the violation output) in float64 on the CPU; a violation
    that does not hold there, or a witness outside the region, makes the verdict unknown."""
    if record.verdict != "violated" or record.witness is None:
        return record
    x = np.asarray(record.witness, dtype=np.float64)
    y = graph.forward(torch.tensor(x).reshape(1, -1))[OUTPUT].reshape(-1).numpy()
    value = float(abs(y[k]) if record.kind == "equality" else y[k])
    if region.contains(x) and value > record.tolerance:
        return replace(record, worst=value, bound=max(record.bound, value))
    return replace(record, verdict="unknown")

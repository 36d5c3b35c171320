"""Configuration of the branch-and-bound search: budgets and heuristics, one frozen dataclass each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

from gridverify.bab.attack import AttackConfig
from gridverify.bab.bound import BoundConfig
from gridverify.bab.filtering import FilterConfig
from gridverify.bounds.alpha import AlphaConfig


def _cores() -> int:
    """The CPU cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


LP_THREADS = min(4, _cores())
"""Default threads of the LP finish: the cores, up to 4 (each program's Python work, about a fifth of its
time, holds the lock)."""


class Branching(str, Enum):
    """Neuron choice: width x |coefficient|, BBPS, or BBPS's top k re-ranked by a true bound (filtering)."""

    WIDTH = "width"
    BBPS = "bbps"
    FILTERED = "bbps-filtered"


@dataclass(frozen=True)
class TightenConfig:
    """When `maximise` tightens boundary neurons, and for how long.

    The plain search runs ``after_s`` seconds (at most a fifth of the budget) first; then, while some
    specification is open, rounds of tightening (``round_s`` seconds, doubling each round) each followed by
    a search on the tightened intervals for ``search_share`` of the round's time (all the time left when no
    further round fits). The search is short because it fails fast while the intervals are still too wide
    and succeeds fast once they are not (ml4acopf 118 prop2: the searches between rounds gave nothing until
    the last, which proved the property in under 4 s)."""

    after_s: float = 10.0
    round_s: float = 10.0
    search_share: float = 0.5
    max_neurons: int = 32  # more boundary neurons than this: no tightening (too many searches)


@dataclass(frozen=True)
class SearchConfig:
    """Budget and heuristics of the search."""

    timeout_s: float = 60.0
    batch: int = 64
    max_domains: int = 100_000
    memory_gb: float = 4.0  # half for open domains (capped), half for bounding a batch and its filtering
    tolerance: float = 1e-4
    root: AlphaConfig = AlphaConfig(steps=20)
    bound: BoundConfig = BoundConfig()
    attack: AttackConfig = AttackConfig()
    attack_every: int = 4  # input splits: children attacked every this many batches
    attack_share: tuple[float, float, float] = (0.02, 0.1, 0.5)  # falsifier's time share: min, start, max
    input_split_max_dims: int = 6
    input_split_switch_dims: int = 64  # a stalled neuron search may switch to input splits up to this
    stall_window: float = 0.1  # budget fraction over which the largest gap must shrink by stall_gain
    stall_gain: float = 0.05  # ... or the search switches between input and neuron splits
    branching: Branching = Branching.FILTERED  # bench/bab.py: decides more than width or plain BBPS
    split_tables: bool = True
    filtering: FilterConfig = FilterConfig()
    refresh_intermediate: bool | None = None  # CROWN intervals per child; None: for input splits only
    tighten: TightenConfig | None = None  # boundary-neuron tightening of open specifications (bab.tighten)
    bbps_floor_frac: float = 0.01  # BBPS gains below this x tolerance count as none: width choice instead
    relations: bool = True  # narrow related neurons of each domain (`gridverify.bab.relations`)
    # LP finish of open children (`gridverify.bab.lp_cut`): at most this share of a batch's time; 0 off. 4
    # since the sign patterns (1 before: case30 q_balance[bus 22] alone, 60 s open -> verified in 7.3 s)
    lp_cut: float = 4.0
    lp_patterns: int = 8  # LP finish: most programs per domain, one per sign pattern of its undecided relus
    # LP finish: threads solving domains' programs at once (HiGHS runs outside Python's lock; the bounding
    # passes are torch's, between them)
    lp_threads: int = LP_THREADS
    # LP finish: where every relu / abs keeps its sign on the domains, the affine collapse of the program
    # (`gridverify.bounds.lp.AffineShape`: the input and the frontier only; case57 balance rows 94 columns
    # instead of 730, same bounds)
    lp_affine: bool = True
    in_turns: bool = True  # batches take every open specification's worst domain in turn (`_in_turns`)
    progress: bool = False

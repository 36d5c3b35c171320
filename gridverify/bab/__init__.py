"""Branch and bound on general nonlinearities (GenBaB) and on inputs, with PGD counterexamples."""

from gridverify.bab.attack import AttackConfig, attack, line_corners
from gridverify.bab.bound import BoundConfig
from gridverify.bab.filtering import FilterConfig
from gridverify.bab.search import Branching, SearchConfig, SpecResult, Verdict, decide, maximise
from gridverify.bab.tighten import TightenConfig, boundary_neurons, tighten

__all__ = [
    "AttackConfig",
    "BoundConfig",
    "Branching",
    "FilterConfig",
    "SearchConfig",
    "SpecResult",
    "TightenConfig",
    "Verdict",
    "attack",
    "boundary_neurons",
    "decide",
    "line_corners",
    "maximise",
    "tighten",
]

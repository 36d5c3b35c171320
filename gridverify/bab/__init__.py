"""Branch and bound on general nonlinearities (GenBaB) and on inputs, with PGD counterexamples."""

from gridverify.bab.attack import AttackConfig, attack, line_corners
from gridverify.bab.bound import BoundConfig
from gridverify.bab.config import Branching, SearchConfig, TightenConfig
from gridverify.bab.filtering import FilterConfig
from gridverify.bab.maximise import Prepared, begin, maximise
from gridverify.bab.search import Search
from gridverify.bab.tighten import boundary_neurons, tighten
from gridverify.bab.verdict import SpecResult, Verdict, combine, decide, proves, refutes

__all__ = [
    "AttackConfig",
    "BoundConfig",
    "Branching",
    "FilterConfig",
    "Prepared",
    "Search",
    "SearchConfig",
    "SpecResult",
    "TightenConfig",
    "Verdict",
    "attack",
    "begin",
    "boundary_neurons",
    "combine",
    "decide",
    "line_corners",
    "maximise",
    "proves",
    "refutes",
    "tighten",
]

"""ACOPF surrogates: the MLP with outputs squashed into their limits
(`AcopfSurrogate`, `Layout`), its composition with the constraint graph (`compose`), training data from
PYPOWER's AC-OPF and training (`gridverify.surrogate.dataset`, `gridverify.surrogate.train`), replay in
pandapower (`replay`), and the cases shipped in ``cases/`` (`load_case`, `available_cases`)."""

from gridverify.surrogate.case import (
    Case,
    CaseDefinition,
    CaseFolder,
    FileCase,
    available_cases,
    load_case,
    open_case,
    read_surrogate,
)
from gridverify.surrogate.compose import compose, graft, surrogate_graph
from gridverify.surrogate.model import DISPATCH, AcopfSurrogate, Layout
from gridverify.surrogate.replay import Replay, replay

__all__ = [
    "DISPATCH",
    "AcopfSurrogate",
    "Case",
    "CaseDefinition",
    "CaseFolder",
    "FileCase",
    "Layout",
    "Replay",
    "available_cases",
    "compose",
    "graft",
    "load_case",
    "open_case",
    "read_surrogate",
    "replay",
    "surrogate_graph",
]

"""Grids: case data in per unit (`GridData`, from pandapower nets and MATPOWER / PGLib files), the constraint
families (`FAMILIES`, one `Family` table) and the ACOPF constraint set written once in sympy and compiled
into one small vectorised graph (`compile_acopf`).

The names below are imported on first use (PEP 562), so that reading `gridverify.grid.families` (the CLI's
``--help``) does not import sympy and pandapower."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gridverify.grid.acopf import (
        QUANTITIES,
        AcopfProblem,
        Constraint,
        FlowCoefficients,
        Formulation,
        PolarFormulation,
        build_acopf,
        compile_acopf,
    )
    from gridverify.grid.data import (
        Branches,
        Buses,
        ElementIds,
        Generators,
        GridData,
        GridError,
        Loads,
        OperatingPoint,
        branch_flows,
        from_matpower,
        from_pandapower,
        matpower_net,
        operating_point,
        pandapower_ids,
    )
    from gridverify.grid.families import BALANCE, FAMILIES, Family, Kind, family
    from gridverify.grid.net import grid_net, read_grid

_MODULES = ("families", "data", "net", "acopf")  # where __getattr__ looks, lightest first

__all__ = [
    "BALANCE",
    "FAMILIES",
    "QUANTITIES",
    "AcopfProblem",
    "Branches",
    "Buses",
    "Constraint",
    "ElementIds",
    "Family",
    "FlowCoefficients",
    "Formulation",
    "Generators",
    "GridData",
    "GridError",
    "Kind",
    "Loads",
    "OperatingPoint",
    "PolarFormulation",
    "branch_flows",
    "build_acopf",
    "compile_acopf",
    "family",
    "from_matpower",
    "from_pandapower",
    "grid_net",
    "matpower_net",
    "operating_point",
    "pandapower_ids",
    "read_grid",
]


def __getattr__(name: str) -> Any:
    """A public name of the package (`__all__`), imported from its module on first use."""
    if name in __all__:
        for module in _MODULES:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name, None)
            if value is not None:
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

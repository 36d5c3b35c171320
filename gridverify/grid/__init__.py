"""Grids: case data in per unit (`GridData`, from pandapower nets and MATPOWER / PGLib files) and the ACOPF
constraint set written once in sympy and compiled into one small vectorised graph (`compile_acopf`)."""

from gridverify.grid.acopf import (
    FAMILIES,
    QUANTITIES,
    AcopfProblem,
    Constraint,
    FlowCoefficients,
    Formulation,
    Kind,
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
    Loads,
    OperatingPoint,
    branch_flows,
    from_matpower,
    from_pandapower,
    matpower_net,
    operating_point,
)

__all__ = [
    "FAMILIES",
    "QUANTITIES",
    "AcopfProblem",
    "Branches",
    "Buses",
    "Constraint",
    "ElementIds",
    "FlowCoefficients",
    "Formulation",
    "Generators",
    "GridData",
    "Kind",
    "Loads",
    "OperatingPoint",
    "PolarFormulation",
    "branch_flows",
    "build_acopf",
    "compile_acopf",
    "from_matpower",
    "from_pandapower",
    "matpower_net",
    "operating_point",
]

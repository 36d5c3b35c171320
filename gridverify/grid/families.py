"""The constraint families of the ACOPF problem, listed once: `FAMILIES`, one `Family` each.

A family is one kind of constraint written for every element of one type: ``thermal_from`` for every rated
branch, ``vm_min`` for every bus with a lower voltage limit. Each knows its `Kind` (equality residual or
inequality ``g(x) <= 0``), the element type it is written for (``bus``, ``branch`` or ``gen``), the unit
of its values (violations and tolerances are in it) and what it says. `gridverify.grid.acopf` builds the
constraints in this order; the CLI lists the families of ``verify --help`` from here, the driver reads the
units, the figures the element types.

This module imports nothing heavy (no sympy, pandapower or torch): ``gridverify --help`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

__all__ = ["BALANCE", "FAMILIES", "NAMES", "THERMAL", "Element", "Family", "Kind", "family", "of_element"]

Element = Literal["bus", "branch", "gen"]


class Kind(Enum):
    """An equality residual ``h(x) = 0`` or an inequality ``g(x) <= 0``."""

    EQUALITY = "equality"
    INEQUALITY = "inequality"


@dataclass(frozen=True)
class Family:
    """One constraint family: ``name`` (the graph output and the key of tolerances), ``kind``, the
    ``element`` type it is written for, the ``unit`` of its values and a one-line ``description``."""

    name: str
    kind: Kind
    element: Element
    unit: str
    description: str


_EQ, _LE = Kind.EQUALITY, Kind.INEQUALITY
FAMILIES: tuple[Family, ...] = (  # each g(x) as `gridverify.grid.acopf` writes it, per unit
    Family("p_balance", _EQ, "bus", "pu", "P balance: sum pg - sum pd - gs vm^2 - flows out = 0"),
    Family("q_balance", _EQ, "bus", "pu", "Q balance: sum qg - sum qd + bs vm^2 - flows out = 0"),
    Family("ref_angle", _EQ, "bus", "rad", "the reference bus's angle at the case's value: va - va_ref = 0"),
    Family("thermal_from", _LE, "branch", "pu^2", "MVA at the from end: p^2 + q^2 - rate_a^2 <= 0"),
    Family("thermal_to", _LE, "branch", "pu^2", "MVA at the to end: p^2 + q^2 - rate_a^2 <= 0"),
    Family("angle_min", _LE, "branch", "rad", "angle difference lower limit: angmin - (va_f - va_t) <= 0"),
    Family("angle_max", _LE, "branch", "rad", "angle difference upper limit: (va_f - va_t) - angmax <= 0"),
    Family("vm_min", _LE, "bus", "pu", "voltage magnitude lower limit: vmin - vm <= 0"),
    Family("vm_max", _LE, "bus", "pu", "voltage magnitude upper limit: vm - vmax <= 0"),
    Family("pg_min", _LE, "gen", "pu", "active power lower limit: pmin - pg <= 0"),
    Family("pg_max", _LE, "gen", "pu", "active power upper limit: pg - pmax <= 0"),
    Family("qg_min", _LE, "gen", "pu", "reactive power lower limit: qmin - qg <= 0"),
    Family("qg_max", _LE, "gen", "pu", "reactive power upper limit: qg - qmax <= 0"),
)  # fmt: skip
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
BALANCE: tuple[str, ...] = ("p_balance", "q_balance")  # the power balance families (a surrogate's residuals)
THERMAL: tuple[str, ...] = ("thermal_from", "thermal_to")  # apparent power against rate_a (loading in %)
_BY_NAME = {f.name: f for f in FAMILIES}


def family(name: str) -> Family:
    """The family called ``name`` (ValueError naming the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown constraint family {name!r}; known: {', '.join(NAMES)}") from None


def of_element(element: Element, leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Names of the families written for ``element`` type, in `FAMILIES` order, but ``leave_out``."""
    return tuple(f.name for f in FAMILIES if f.element == element and f.name not in leave_out)

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


def _limits(
    name: str, element: Element, unit: str, what: str, x: str, lo: str, hi: str
) -> tuple[Family, ...]:
    """The lower and upper limit families of one quantity ``x``: ``lo - x <= 0`` and ``x - hi <= 0``."""
    return (
        Family(f"{name}_min", _LE, element, unit, f"{what} lower limit: {lo} - {x} <= 0"),
        Family(f"{name}_max", _LE, element, unit, f"{what} upper limit: {x} - {hi} <= 0"),
    )


FAMILIES: tuple[Family, ...] = (  # each g(x) as `gridverify.grid.acopf` writes it, per unit
    Family("p_balance", _EQ, "bus", "pu", "P balance: sum pg - sum pd - gs vm^2 - flows out = 0"),
    Family("q_balance", _EQ, "bus", "pu", "Q balance: sum qg - sum qd + bs vm^2 - flows out = 0"),
    Family("ref_angle", _EQ, "bus", "rad", "the reference bus's angle at the case's value: va - va_ref = 0"),
    *(Family(f"thermal_{end}", _LE, "branch", "pu^2", f"MVA at the {end} end: p^2 + q^2 - rate_a^2 <= 0")
      for end in ("from", "to")),
    *_limits("angle", "branch", "rad", "angle difference", "(va_f - va_t)", "angmin", "angmax"),
    *_limits("vm", "bus", "pu", "voltage magnitude", "vm", "vmin", "vmax"),
    *_limits("pg", "gen", "pu", "active power", "pg", "pmin", "pmax"),
    *_limits("qg", "gen", "pu", "reactive power", "qg", "qmin", "qmax"),
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

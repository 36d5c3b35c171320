"""The verdict rule, defined once, and the result of one specification's search.

A specification ``max c^T y <= threshold`` is *verified* by a certified upper bound and *violated* by the
value of a float64-checked point of the box (its ``worst``). The unsafe set is open (``c^T y > threshold``)
by default, closed (``c^T y >= threshold``, VNN-LIB's ``>=`` atoms) with ``closed=True``. `proves` and
`refutes` work on floats and elementwise on tensors alike; `decide` combines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import overload

from torch import Tensor


class Verdict(str, Enum):
    VERIFIED = "verified"
    VIOLATED = "violated"
    UNKNOWN = "unknown"


@overload
def proves(upper: float, threshold: float, closed: bool = False) -> bool: ...
@overload
def proves(upper: Tensor, threshold: float | Tensor, closed: bool = False) -> Tensor: ...
def proves(upper: float | Tensor, threshold: float | Tensor, closed: bool = False) -> bool | Tensor:
    """Whether a certified ``upper`` bound proves ``c^T y`` stays out of the unsafe set: ``upper <=
    threshold`` for an open unsafe set, ``upper < threshold`` strictly for a closed one."""
    return upper < threshold if closed else upper <= threshold


@overload
def refutes(worst: float, threshold: float, closed: bool = False) -> bool: ...
@overload
def refutes(worst: Tensor, threshold: float | Tensor, closed: bool = False) -> Tensor: ...
def refutes(worst: float | Tensor, threshold: float | Tensor, closed: bool = False) -> bool | Tensor:
    """Whether a checked point's value ``worst`` lies in the unsafe set: ``worst > threshold`` for an open
    unsafe set, ``worst >= threshold`` for a closed one."""
    return worst >= threshold if closed else worst > threshold


def decide(upper: float, worst: float, threshold: float, closed: bool = False) -> Verdict:
    """The verdict rule of ``max c^T y <= threshold`` from a certified ``upper`` bound and the ``worst``
    value of a float64-checked point. Open unsafe set ``c^T y > threshold`` (``closed=False``): violated
    when ``worst > threshold``, verified when ``upper <= threshold``. Closed unsafe set ``c^T y >=
    threshold`` (VNN-LIB's ``>=`` atoms): violated when ``worst >= threshold``, verified only when ``upper <
    threshold`` strictly. A point in the unsafe set wins over a bound (they disagree only by rounding)."""
    if refutes(worst, threshold, closed):
        return Verdict.VIOLATED
    if proves(upper, threshold, closed):
        return Verdict.VERIFIED
    return Verdict.UNKNOWN


def combine(verdicts: list[Verdict | None]) -> Verdict:
    """The verdict of a constraint from its rows' (an equality has two): violated when one row is,
    verified when every row is, unknown otherwise."""
    if Verdict.VIOLATED in verdicts:
        return Verdict.VIOLATED
    if all(v is Verdict.VERIFIED for v in verdicts):
        return Verdict.VERIFIED
    return Verdict.UNKNOWN


@dataclass(frozen=True)
class SpecResult:
    """The certified interval ``[worst, upper]`` of ``max c^T y`` over the box, and the verdict."""

    spec: int
    verdict: Verdict | None  # None when no threshold was given (maximise only)
    upper: float
    worst: float
    witness: Tensor  # float64 point of the box where c^T y = worst
    domains: int  # domains explored (children bounded) for this specification
    seconds: float  # when it was decided (or the search ended)
    # (elapsed seconds, certified upper bound), one point whenever the bound improved
    history: tuple[tuple[float, float], ...] = field(default=(), repr=False)
    # why its search ended: "settled", "time" (the budget), "memory" (the domain cap of memory_gb)
    stopped: str = "settled"

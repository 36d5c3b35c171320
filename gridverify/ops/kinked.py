"""Two linear pieces meeting at 0: ``f(x) = x`` for ``x >= 0`` and ``a*x`` for ``x < 0``, for any real ``a``
(relu: a = 0, abs: a = -1, leaky_relu: a = its ``negative_slope``). Interval, relaxation and default alpha,
shared by those ops.

Relaxation on ``[l, u]``: exact lines when ``l >= 0`` (y = x) or ``u <= 0`` (y = a*x). Across 0, with
``lo = min(a, 1)``, ``hi = max(a, 1)`` and ``s = lo + alpha*(hi - lo)`` for ``alpha`` in [0, 1]:

- ``a <= 1`` (convex): ``s*x <= f(x) <= chord(x) = a*l + (u - a*l)/(u - l) * (x - l)``;
- ``a > 1`` (concave): ``chord(x) <= f(x) <= s*x``.

``s*x`` lies on the right side of both pieces because ``lo <= s <= hi`` and the pieces meet at 0; the chord
joins the endpoints of a convex (concave) function. Default alpha: slope 1 if ``u > -l``, else slope a
(CROWN's adaptive choice). Rounding: for ``a`` in {0, -1} (relu, abs) every line but the chord holds in
floating point as computed (``a*x`` is exact and ``|fl(s*x)| <= |x|`` keeps the sign of ``s*x``), so only
the chord is rounded outward by the registry; for other ``a`` every line is. Interval: the image of the
endpoints (``a*x`` rounded outward where inexact), widened to include f(0) = 0 when the box straddles 0
(f is not monotone for a < 0).
Precondition: none.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gridverify.ops.mul import product_bounds
from gridverify.ops.registry import OpDef, Relaxation


def interval(l: Tensor, u: Tensor, a: float) -> tuple[Tensor, Tensor]:
    """``[min f, max f]`` over ``[l, u]`` (f's values at l, u and 0), each end rounded outward: ``a*x`` is
    exact for ``a`` in {0, 1, -1}, else bounded by `product_bounds` (leaky relu's ``0.01*x`` rounded to
    nearest could lie half an ulp above the true product at a lower end)."""
    (l_lo, l_hi), (u_lo, u_hi) = _image(l, a), _image(u, a)
    lo, hi = torch.minimum(l_lo, u_lo), torch.maximum(l_hi, u_hi)
    straddle = (l < 0) & (u > 0)
    zero = torch.zeros_like(lo)
    return torch.where(straddle, torch.minimum(lo, zero), lo), torch.where(
        straddle, torch.maximum(hi, zero), hi
    )


def _image(x: Tensor, a: float) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds of ``f(x)``: ``x`` where ``x >= 0``, else ``a*x`` (directed where inexact)."""
    if a in (0.0, 1.0, -1.0):
        y = torch.where(x >= 0, x, _times(a, x))
        return y, y
    lo, hi = product_bounds(torch.full_like(x, a), x)
    return torch.where(x >= 0, x, lo), torch.where(x >= 0, x, hi)


def _times(a: float, x: Tensor) -> Tensor:
    """``a*x``, with ``0*x = 0`` also at an infinite x (relu's chord on a box with an infinite end)."""
    return torch.zeros_like(x) if a == 0 else a * x


def relax(l: Tensor, u: Tensor, alpha: Tensor, a: float) -> Relaxation:
    """The lines of the module docstring on ``[l, u]`` for the left slope ``a``."""
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    exact_slope = torch.where(active, torch.ones_like(u), torch.full_like(u, a))
    chord = torch.where(unstable, (u - _times(a, l)) / width, exact_slope)
    chord_b = torch.where(unstable, _times(a, l) - chord * l, torch.zeros_like(l))
    lo_s, hi_s = min(a, 1.0), max(a, 1.0)
    through = torch.where(unstable, lo_s + alpha[0] * (hi_s - lo_s), exact_slope)
    zero, exact = torch.zeros_like(through), a in (0.0, -1.0)
    if a <= 1.0:
        return Relaxation(
            (through,), zero, (chord,), chord_b, exact_lower=exact, exact_upper=exact and ~unstable
        )
    return Relaxation((chord,), chord_b, (through,), zero)


def init_alpha(l: Tensor, u: Tensor, a: float) -> Tensor:
    """Slope 1 where ``u > -l``, else slope ``a``: shape (1, *l.shape)."""
    to_one = (u > -l).to(u.dtype)
    return (to_one if a <= 1.0 else 1.0 - to_one).unsqueeze(0)


def make_op(name: str, forward: Callable[[Tensor], Tensor], a: float, **facts: Any) -> OpDef:
    """The `OpDef` of the two pieces with the fixed left slope ``a``: interval, relaxation and alpha (one
    parameter)."""

    def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        return interval(lows[0], ups[0], a)

    def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
        return relax(lows[0], ups[0], alpha, a)

    def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
        return init_alpha(lows[0], ups[0], a)

    return OpDef(
        name,
        forward,
        interval=_interval,
        relax=_relax,
        n_alpha=1,
        init_alpha=_init,
        kink_at_zero=True,
        **facts,
    )

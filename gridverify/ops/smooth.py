"""Sound linear relaxations of smooth univariate functions, shared by sigmoid, tanh, sin, cos, gelu, exp, ...

A `SmoothFn` gives ``f``, ``f'``, ``f''`` and the inflection points of ``f`` (one period's worth for a
periodic function). On a box ``[l, u]`` the inflections cut ``[l, u]`` into pieces on which ``f`` is convex
or concave, so for any slope ``a`` the tightest offsets

    b_L(a) = min_{x in [l,u]} f(x) - a*x,        b_U(a) = max_{x in [l,u]} f(x) - a*x

are attained at piece endpoints or at the single point of a convex (for the min) / concave (for the max)
piece where ``f'(x) = a``. We locate that point (closed form where the op gives one, else bisection and
Newton steps) and bound ``g = f - a*x`` there by its tangent over the piece, which is a valid bound of a
convex ``g`` whatever point was found. Hence, for every slope ``a``,

    a*x + b_L(a) - margin  <=  f(x)  <=  a*x + b_U(a) + margin      for all x in [l, u],

with ``margin`` a few ulps of the magnitudes involved (outward rounding). This holds for *any* slope, so
the relaxation parameter is the slope itself, mapped from ``alpha`` in ``[0, 1]`` onto the range of ``f'``
over ``[l, u]`` (every hull facet has a slope in that range). The default (``init``) is the line of minimal
area between line and ``f``: the supporting line of the convex (concave) envelope at the midpoint, which is
the tangent at the midpoint on a convex region, the chord on a concave one, and the tangent through the far
endpoint across an inflection, as in CROWN. It is found by bisection on the slope, since the minimiser of
``f(x) - a*x`` moves monotonically right as ``a`` grows.

Periodic functions are first shifted by a whole number of periods so that ``l`` lies in ``[0, period)``;
boxes at least one period wide get the constant lines of the interval bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation

Fn = Callable[[Tensor], Tensor]
Solver = Callable[[Tensor, Tensor, Tensor], Tensor]

_BISECT_STEPS = 24
_NEWTON_STEPS = 4
_ENVELOPE_STEPS = 30
_SLOPE_CAP = 1e30
_NUDGE = 1e-9


@dataclass(frozen=True)
class SmoothFn:
    """A smooth function with known curvature pieces.

    ``solve_df(a, p, q)``, where given, returns the x in ``[p, q]`` with ``f'(x) = a`` on a piece where
    ``f'`` is monotone and ``a`` lies between ``f'(p)`` and ``f'(q)``; accuracy only affects tightness.
    ``abs_err``: an absolute error scale of the float evaluation of ``f`` and ``f'`` (in ulps of 1; 0 for
    functions evaluated to a few ulps relative, such as exp or x**n), added to the outward margin; a relative
    margin keeps e.g. exp's lower bound positive (``log(exp(x))``).
    """

    f: Fn
    df: Fn
    d2f: Fn
    inflections: tuple[float, ...] = ()
    period: float | None = None
    solve_df: Solver | None = None
    abs_err: float = 1.0


def _eps(x: Tensor) -> float:
    return torch.finfo(x.dtype).eps


def _reduce(fn: SmoothFn, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Shift periodic boxes so l lies in [0, period); returns (l', u', shift)."""
    if fn.period is None:
        return l, u, torch.zeros_like(l)
    shift = torch.floor(l / fn.period) * fn.period
    lr = l - shift
    # Boxes a period wide or more are answered by the global range; keep the rest finite and small.
    return lr, torch.minimum(u - shift, lr + fn.period), shift


def _breakpoints(fn: SmoothFn, l: Tensor, u: Tensor) -> Tensor:
    """Sorted points ``[l, inflections clamped to [l, u], u]`` along a new last dimension."""
    pts = [l]
    for c in fn.inflections:
        pts.append(torch.minimum(torch.maximum(torch.full_like(l, c), l), u))
    pts.append(u)
    return torch.stack(pts, dim=-1)


def _bisect(fn: SmoothFn, a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    """Point of [p, q] where the monotone f' meets a (a clamped between f'(p) and f'(q))."""
    increasing = fn.df(q) >= fn.df(p)
    lo, hi = p.clone(), q.clone()
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        below = (fn.df(mid) < a) == increasing
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    x = 0.5 * (lo + hi)
    for _ in range(_NEWTON_STEPS):
        step = (fn.df(x) - a) / fn.d2f(x)
        x = torch.where(torch.isfinite(step), x - step, x).clamp(min=p, max=q)
    return x


def _critical(fn: SmoothFn, a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    dp, dq = fn.df(p), fn.df(q)
    a = torch.minimum(torch.maximum(a, torch.minimum(dp, dq)), torch.maximum(dp, dq))
    x = fn.solve_df(a, p, q) if fn.solve_df is not None else _bisect(fn, a, p, q)
    x = torch.where(torch.isnan(x), p, x)
    return torch.minimum(torch.maximum(x, p), q)


def _extreme(fn: SmoothFn, a: Tensor, bp: Tensor, lower: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(bound, location, magnitude) of min (lower) / max (upper) of f(x) - a*x over breakpoints ``bp``
    (..., K); the magnitude, ``|f(location)|`` plus the largest tangent correction, scales the rounding
    error of the bound (see `_margin`)."""
    a = a.unsqueeze(-1)
    sign = 1.0 if lower else -1.0
    g_end = sign * (fn.f(bp) - a * bp)
    p, q = bp[..., :-1], bp[..., 1:]
    # Interior candidates are needed on convex pieces of sign*g; adding one elsewhere only lowers the min
    # (the endpoints stay candidates), so pieces whose curvature underflows to 0 keep theirs.
    convex = sign * fn.d2f(0.5 * (p + q)) >= 0
    with torch.no_grad():
        x = _critical(fn, a.detach().expand_as(p), p, q)
    g = sign * (fn.f(x) - a * x)
    dg = sign * (fn.df(x) - a)
    correction = torch.minimum(dg * (p - x), dg * (q - x))
    g_in = g + correction
    use = convex & torch.isfinite(g_in)
    g_in = torch.where(use, g_in, torch.full_like(g_in, math.inf))
    cand = torch.cat([g_end, g_in], dim=-1)
    locs = torch.cat([bp.expand_as(g_end), x.expand_as(g_in)], dim=-1)
    idx = cand.argmin(dim=-1)  # not cand.min(dim=-1): its values-and-indices kernel takes ~2 ms per call
    best = cand.gather(-1, idx.unsqueeze(-1)).squeeze(-1)  # with 2 threads on a loaded machine (amin: 2 us)
    loc = locs.gather(-1, idx.unsqueeze(-1)).squeeze(-1)
    corrections = torch.where(use, correction.abs(), torch.zeros_like(correction)).amax(-1)
    return sign * best, loc, fn.f(loc).abs().nan_to_num(nan=math.inf) + corrections


def _margin(fn: SmoothFn, a: Tensor, b: Tensor, mag: Tensor, l: Tensor, u: Tensor, shift: Tensor) -> Tensor:
    """16 ulps of the magnitudes the offset ``b`` was computed from (``mag``: f at the extreme and the
    tangent corrections; ``|a|*|x|`` anywhere on the box, periodic shifts included) and of ``abs_err``.
    Local magnitudes, not ``f`` at both ends: exp's lower bound on [-20, 20] stays positive."""
    scale = fn.abs_err + mag + a.abs() * (l.abs() + u.abs() + shift.abs())
    return 16.0 * _eps(l) * (scale + b.abs() + shift.abs())


def slope_range(fn: SmoothFn, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Range of f' over [l, u] (extremes of f' sit at endpoints or inflections), capped to finite values."""
    lr, ur, _ = _reduce(fn, l, u)
    bp = _breakpoints(fn, lr, ur)
    d = fn.df(bp)
    # An infinite derivative at an endpoint (sqrt at 0) would make every alpha but 0 useless: take f' a
    # hair inside instead (any slope is sound; this only keeps alpha's scale meaningful).
    inside = bp + _NUDGE * (ur - lr).unsqueeze(-1) * torch.where(bp <= lr.unsqueeze(-1), 1.0, -1.0)
    d = torch.where(torch.isfinite(d), d, fn.df(inside))
    lo = d.nan_to_num(nan=0.0).amin(-1).clamp(-_SLOPE_CAP, _SLOPE_CAP)
    hi = d.nan_to_num(nan=0.0).amax(-1).clamp(-_SLOPE_CAP, _SLOPE_CAP)
    return lo, hi


def offset(fn: SmoothFn, l: Tensor, u: Tensor, a: Tensor, lower: bool) -> Tensor:
    """Sound offset b with ``a*x + b <= f(x)`` (lower) or ``>= f(x)`` (upper) on [l, u]."""
    lr, ur, shift = _reduce(fn, l, u)
    lr, ur, shift, a = torch.broadcast_tensors(lr, ur, shift, a)
    shape = a.shape
    b, _, mag = _extreme(fn, a, _breakpoints(fn, lr, ur), lower)
    b = b - a * shift
    m = _margin(fn, a, b, mag, l.expand(shape), u.expand(shape), shift)
    # Where f overflowed on the whole box (b = +inf for a lower, -inf for an upper offset), b -+ m is
    # inf - inf = NaN: the sound finite value is the largest float on that side.
    big = torch.finfo(b.dtype).max
    return torch.where(b == math.inf, big, b - m) if lower else torch.where(b == -math.inf, -big, b + m)


def interval(fn: SmoothFn, l: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Sound image of [l, u]: the offsets of the horizontal lines (period-wide boxes: f's global range)."""
    zero = torch.zeros_like(l)
    lo, hi = offset(fn, l, u, zero, True), offset(fn, l, u, zero, False)
    if fn.period is not None:
        wide = (u - l) >= fn.period
        glo, ghi = _global_range(fn, l)
        lo, hi = torch.where(wide, glo, lo), torch.where(wide, ghi, hi)
    return lo, hi


def _global_range(fn: SmoothFn, like: Tensor) -> tuple[Tensor, Tensor]:
    """Range of a periodic f over a whole period (the offsets of horizontal lines on [0, period])."""
    assert fn.period is not None
    zero = torch.zeros_like(like)
    period = torch.full_like(like, fn.period)
    return offset(fn, zero, period, zero, True), offset(fn, zero, period, zero, False)


def relax(fn: SmoothFn, l: Tensor, u: Tensor, alpha: Tensor) -> Relaxation:
    """Lines with slopes ``alpha[0]``, ``alpha[1]`` (mapped onto the range of f') and sound offsets."""
    lo, hi = slope_range(fn, l, u)
    a_lo, a_hi = lo + alpha[0] * (hi - lo), lo + alpha[1] * (hi - lo)
    b_lo = offset(fn, l, u, a_lo, True)
    b_hi = offset(fn, l, u, a_hi, False)
    if fn.period is not None:
        wide = (u - l) >= fn.period
        if bool(wide.any()):  # a period or wider: the constant lines of f's global range
            glo, ghi = _global_range(fn, l)
            a_lo, a_hi = (torch.where(wide, torch.zeros_like(a), a) for a in (a_lo, a_hi))
            b_lo, b_hi = torch.where(wide, glo, b_lo), torch.where(wide, ghi, b_hi)
    return _finite_or_constant(fn, l, u, a_lo, b_lo, a_hi, b_hi)


def _finite_or_constant(
    fn: SmoothFn, l: Tensor, u: Tensor, a_lo: Tensor, b_lo: Tensor, a_hi: Tensor, b_hi: Tensor
) -> Relaxation:
    """Replace lines that overflowed (e.g. exp of 1e3) by the constant lines of the interval bound."""
    bad_lo = ~(torch.isfinite(a_lo) & torch.isfinite(b_lo))
    bad_hi = ~(torch.isfinite(a_hi) & torch.isfinite(b_hi))
    if bool(bad_lo.any()) or bool(bad_hi.any()):
        ilo, ihi = interval(fn, l, u)
        a_lo = torch.where(bad_lo, torch.zeros_like(a_lo), a_lo)
        # Keep infinities infinite (nan_to_num's default would turn an upper +inf into a finite max).
        ilo = ilo.nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
        ihi = ihi.nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf)
        b_lo = torch.where(bad_lo, ilo.expand_as(b_lo), b_lo)
        a_hi = torch.where(bad_hi, torch.zeros_like(a_hi), a_hi)
        b_hi = torch.where(bad_hi, ihi.expand_as(b_hi), b_hi)
    return Relaxation((a_lo,), b_lo, (a_hi,), b_hi)


def _envelope_alpha(fn: SmoothFn, l: Tensor, u: Tensor, lower: bool) -> Tensor:
    """alpha whose line supports the convex (lower) / concave (upper) envelope at the midpoint."""
    lr, ur, _ = _reduce(fn, l, u)
    bp = _breakpoints(fn, lr, ur)
    mid = 0.5 * (lr + ur)
    a_min, a_max = slope_range(fn, l, u)
    lo, hi = torch.zeros_like(l), torch.ones_like(l)
    for _ in range(_ENVELOPE_STEPS):
        t = 0.5 * (lo + hi)
        _, x, _ = _extreme(fn, a_min + t * (a_max - a_min), bp, lower)
        grow = (x < mid) if lower else (x > mid)
        lo, hi = torch.where(grow, t, lo), torch.where(grow, hi, t)
    return 0.5 * (lo + hi)


def init_alpha(fn: SmoothFn, l: Tensor, u: Tensor) -> Tensor:
    """Minimal-area lines (CROWN's choice), shape (2, *l.shape): on a box without an inflection inside,
    the tangent at the midpoint and the chord; across inflections, the envelopes' lines at the midpoint."""
    with torch.no_grad():
        lr, ur, _ = _reduce(fn, l, u)
        inner = _breakpoints(fn, lr, ur)[..., 1:-1]
        crosses = ((inner > lr.unsqueeze(-1)) & (inner < ur.unsqueeze(-1))).any(-1)
        lo, hi = slope_range(fn, l, u)
        mid = 0.5 * (lr + ur)
        tangent = (fn.df(mid) - lo) / (hi - lo)
        chord = ((fn.f(ur) - fn.f(lr)) / (ur - lr) - lo) / (hi - lo)
        convex = fn.d2f(mid) >= 0
        alpha = torch.stack([torch.where(convex, tangent, chord), torch.where(convex, chord, tangent)])
        if bool(crosses.any()):
            envelope = torch.stack([_envelope_alpha(fn, l, u, True), _envelope_alpha(fn, l, u, False)])
            alpha = torch.where(crosses, envelope, alpha)
        return alpha.nan_to_num(nan=0.5).clamp(0.0, 1.0)


def make_op(
    name: str,
    fn: SmoothFn | Callable[..., SmoothFn],
    domain: Callable[[Tensor, Tensor], None] | None = None,
    **facts: Any,
) -> OpDef:
    """The `OpDef` of an elementwise smooth function: forward, interval, relax and alpha from ``fn``, or for
    a family of functions (power's exponent) from ``fn(**params)``, a function of the node's parameters."""

    def of(**params: Any) -> SmoothFn:
        return fn if isinstance(fn, SmoothFn) else fn(**params)

    def _check(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> None:
        if domain is not None:
            domain(lows[0], ups[0])

    def _forward(x: Tensor, **params: Any) -> Tensor:
        return of(**params).f(x)

    def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], **params: Any) -> tuple[Tensor, Tensor]:
        _check(lows, ups)
        return interval(of(**params), lows[0], ups[0])

    def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, **params: Any) -> Relaxation:
        _check(lows, ups)
        return relax(of(**params), lows[0], ups[0], alpha)

    def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], **params: Any) -> Tensor:
        _check(lows, ups)
        return init_alpha(of(**params), lows[0], ups[0])

    forward = fn.f if isinstance(fn, SmoothFn) else _forward
    check = _check if domain is not None else None
    return OpDef(
        name,
        forward,
        interval=_interval,
        relax=_relax,
        n_alpha=2,
        init_alpha=_init,
        check_domain=check,
        **facts,
    )

"""reciprocal(x) = 1/x on a box that excludes 0: convex for x > 0, concave for x < 0.

Relaxation (see `gridverify.ops.smooth`): on a positive box, tangent below and chord above,
``2/t - x/t^2 <= 1/x <= (l + u - x)/(l*u)``; the mirror image on a negative box.
Precondition: ``l > 0`` or ``u < 0``; a box containing 0 raises `DomainError` (division by a quantity that
may vanish cannot be bounded). An infinite far end (``[l, inf]``, an overflowed softmax denominator, or
``[-inf, u]``) gets the constant lines of its interval ``[0, 1/l]`` (``[1/u, 0]``): 1/x keeps its sign
and is monotone there.
"""

import dataclasses

import torch
from torch import Tensor

from gridverify.ops import smooth
from gridverify.ops.registry import Relaxation, domain_check, register


def _f(x: Tensor) -> Tensor:
    return 1 / x


def _d1(x: Tensor) -> Tensor:
    return -1 / (x * x)


def _d2(x: Tensor) -> Tensor:
    return 2 / (x * x * x)


def _solve(a: Tensor, p: Tensor, q: Tensor) -> Tensor:
    root = torch.sqrt(-1 / a.clamp(max=-torch.finfo(a.dtype).tiny))
    return torch.where(p + q > 0, root, -root)


def _straddles_zero(lower: Tensor, upper: Tensor) -> Tensor:
    return (lower <= 0) & (upper >= 0)


FN = smooth.SmoothFn(_f, _d1, _d2, solve_df=_solve, abs_err=0.0)
_BASE = smooth.make_op(
    "reciprocal", FN, domain=domain_check("reciprocal", "an input interval that excludes 0", _straddles_zero)
)


def _finite_box(l: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The box with an infinite far end replaced by twice the near end (same sign, so the near end's
    bound is kept), and masks of the entries whose upper (``[l, inf]``) or lower end was infinite."""
    up_inf, low_inf = torch.isinf(u) & (l > 0), torch.isinf(l) & (u < 0)
    return torch.where(low_inf, 2 * u, l), torch.where(up_inf, 2 * l, u), up_inf, low_inf


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    l, u, up_inf, low_inf = _finite_box(lows[0], ups[0])
    lo, hi = _BASE.interval((l,), (u,))  # type: ignore[misc]
    zero = torch.zeros_like(lo)
    return torch.where(up_inf, zero, lo), torch.where(low_inf, zero, hi)


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    l, u, up_inf, low_inf = _finite_box(lows[0], ups[0])
    r = _BASE.relax((l,), (u,), alpha)  # type: ignore[misc]
    far = up_inf | low_inf
    if not bool(far.any()):
        return r
    lo, hi = _interval(lows, ups)
    zero = torch.zeros_like(r.lw[0])
    return Relaxation(
        (torch.where(far, zero, r.lw[0]),),
        torch.where(far, lo.expand_as(r.lb), r.lb),
        (torch.where(far, zero, r.uw[0]),),
        torch.where(far, hi.expand_as(r.ub), r.ub),
    )


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
    l, u, _, _ = _finite_box(lows[0], ups[0])
    return _BASE.init_alpha((l,), (u,))


OP = register(
    dataclasses.replace(
        _BASE,
        interval=_interval,
        relax=_relax,
        init_alpha=_init,
        torch_functions=(torch.reciprocal, "reciprocal"),
        onnx_types=("Reciprocal",),
        sample_domain=(0.05, 50.0),
    )
)

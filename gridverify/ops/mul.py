"""mul(x, y) = x * y: elementwise product of two variable tensors (broadcasting), bilinear.

Relaxation on ``[xl, xu] x [yl, yu]`` (McCormick, interpolation weights ``r = alpha[0]`` for the lower plane
and ``r' = alpha[1]`` for the upper one, both in [0, 1]; the default is 1/2):

    xy >= (r*yl + (1-r)*yu) x + (r*xl + (1-r)*xu) y - r*xl*yl - (1-r)*xu*yu
    xy <= (r'*yu + (1-r')*yl) x + (r'*xl + (1-r')*xu) y - r'*xl*yu - (1-r')*xu*yl

Each is a convex combination of the two McCormick planes, valid on the whole box. Offsets are widened by a
few ulps (outward rounding). The interval's corner products are rounded outward (`product_bounds`: one
ulp, only where a product is inexact). Precondition: none. Rewrite x*x as `square` (much tighter).
"""

import math
import operator

import torch
from torch import Tensor

from gridverify.ops.registry import (
    OpDef,
    Relaxation,
    broadcast_shape,
    elementwise_shape,
    operator_calls,
    register,
)


def _forward(x: Tensor, y: Tensor) -> Tensor:
    return x * y


_SPLITTER = 134217729.0  # 2**27 + 1: Veltkamp's split of a float64 into two 26-bit halves
_SPLIT_MAX = 2.0**995  # larger factors could overflow in the split
_PRODUCT_MIN = 2.0**-960  # smaller products could lose bits of the error term to underflow


def _split(a: Tensor) -> tuple[Tensor, Tensor]:
    c = _SPLITTER * a
    high = c - (c - a)
    return high, a - high


def _rounding_error(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    """``a*b - p`` exactly for ``p = fl(a*b)`` (Dekker's TwoProduct), where `_exact_range` holds."""
    ah, al = _split(a)
    bh, bl = _split(b)
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _exact_range(a: Tensor, b: Tensor, p: Tensor) -> Tensor:
    return (a.abs() <= _SPLIT_MAX) & (b.abs() <= _SPLIT_MAX) & (p.abs() >= _PRODUCT_MIN)


def product_bounds(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``lo <= a*b <= hi`` for the exact product: ``fl(a*b)`` where exact (a zero factor, or a zero
    TwoProduct error), else one ulp outward on the side the rounding went (on both where the error cannot
    be computed exactly: float32, huge factors, tiny products; correct rounding errs by half an ulp)."""
    a, b = torch.broadcast_tensors(a, b)
    p = a * b
    if p.dtype == torch.float64:
        known = _exact_range(a, b, p)
        err = torch.where(known, _rounding_error(a, b, p), torch.zeros_like(p))
        exact = (a == 0) | (b == 0) | (known & (err == 0))
        down, up = exact | (known & (err > 0)), exact | (known & (err < 0))
    else:
        down = up = (a == 0) | (b == 0)
    lo = torch.where(down, p, torch.nextafter(p, torch.full_like(p, -math.inf)))
    hi = torch.where(up, p, torch.nextafter(p, torch.full_like(p, math.inf)))
    return lo, hi


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    (xl, yl), (xu, yu) = lows, ups
    corners = [product_bounds(x, y) for x, y in ((xl, yl), (xl, yu), (xu, yl), (xu, yu))]
    lo = torch.stack(torch.broadcast_tensors(*(c[0] for c in corners))).amin(0)
    hi = torch.stack(torch.broadcast_tensors(*(c[1] for c in corners))).amax(0)
    return lo, hi


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    (xl, yl), (xu, yu) = lows, ups
    r, s = alpha[0], alpha[1]
    margin = 8 * torch.finfo(xl.dtype).eps * (xl.abs() + xu.abs()) * (yl.abs() + yu.abs())
    lwx, lwy = r * yl + (1 - r) * yu, r * xl + (1 - r) * xu
    lb = -r * xl * yl - (1 - r) * xu * yu - margin
    uwx, uwy = s * yu + (1 - s) * yl, s * xl + (1 - s) * xu
    ub = -s * xl * yu - (1 - s) * xu * yl + margin
    return Relaxation((lwx, lwy), lb, (uwx, uwy), ub)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
    shape = broadcast_shape(*(tuple(t.shape) for t in (*lows, *ups)))
    return torch.full((2, *shape), 0.5, dtype=lows[0].dtype, device=lows[0].device)


OP = register(
    OpDef(
        name="mul",
        mixes=True,
        arity=2,
        forward=_forward,
        shape=elementwise_shape,
        interval=_interval,
        relax=_relax,
        n_alpha=2,
        init_alpha=_init,
        sympy_heads=("Mul",),
        torch_functions=operator_calls(torch.mul, operator.mul),
        onnx_types=("Mul",),
    )
)

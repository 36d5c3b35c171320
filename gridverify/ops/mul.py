"""mul(x, y) = x * y: elementwise product of two variable tensors (broadcasting), bilinear.

Relaxation on ``[xl, xu] x [yl, yu]`` (McCormick, interpolation weights ``r = alpha[0]`` for the lower plane
and ``r' = alpha[1]`` for the upper one, both in [0, 1]; the default is 1/2):

    xy >= (r*yl + (1-r)*yu) x + (r*xl + (1-r)*xu) y - r*xl*yl - (1-r)*xu*yu
    xy <= (r'*yu + (1-r')*yl) x + (r'*xl + (1-r')*xu) y - r'*xl*yu - (1-r')*xu*yl

Each is a convex combination of the two McCormick planes, valid on the whole box. Offsets are widened by a
few ulps (outward rounding). Precondition: none. Rewrite x*x as `square` (much tighter).
"""

import operator

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation, broadcast_shape, elementwise_shape, register


def _forward(x: Tensor, y: Tensor) -> Tensor:
    return x * y


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    (xl, yl), (xu, yu) = lows, ups
    corners = torch.stack(torch.broadcast_tensors(xl * yl, xl * yu, xu * yl, xu * yu))
    return corners.amin(0), corners.amax(0)


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
        kind="nonlinear",
        arity=2,
        forward=_forward,
        shape=elementwise_shape,
        interval=_interval,
        relax=_relax,
        n_alpha=2,
        init_alpha=_init,
        sympy_heads=("Mul",),
        torch_functions=(torch.mul, operator.mul, "mul", "__mul__"),
        onnx_types=("Mul",),
    )
)

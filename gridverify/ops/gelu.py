"""gelu(x) = x * Phi(x) (exact, erf form): convex on [-sqrt 2, sqrt 2], concave outside.

Its minimum is about -0.17 at x about -0.75. Relaxation (see `gridverify.ops.smooth`): ``a_L*x + b_L <=
gelu(x) <= a_U*x + b_U`` on ``[l, u]`` for slopes in the range of gelu' over the box, offsets tightest
possible (the point where gelu' = a is found by bisection on each monotone piece of gelu').
Precondition: none. Range ``[-0.17, inf)`` (rounded below the minimum).
"""

import math

import torch
from torch import Tensor, nn

from gridverify.ops import smooth
from gridverify.ops.registry import register

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2 * math.pi)
GELU_MIN_BELOW = -0.17  # below gelu's minimum -0.16997120747990369 (at x = -0.7517915246935645)


def _phi(x: Tensor) -> Tensor:
    return _INV_SQRT_2PI * torch.exp(-0.5 * x * x)


def _cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / _SQRT2))


def _f(x: Tensor) -> Tensor:
    return x * _cdf(x)


def _d1(x: Tensor) -> Tensor:
    return _cdf(x) + x * _phi(x)


def _d2(x: Tensor) -> Tensor:
    return _phi(x) * (2 - x * x)


FN = smooth.SmoothFn(_f, _d1, _d2, inflections=(-_SQRT2, _SQRT2))

OP = register(
    smooth.make_op(
        "gelu",
        FN,
        torch_functions=(torch.nn.functional.gelu, nn.GELU),
        onnx_types=("Gelu",),
        value_range=(GELU_MIN_BELOW, math.inf),
        sample_domain=(-10.0, 10.0),
    )
)

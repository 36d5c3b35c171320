"""leaky_relu(x; negative_slope=a) = x for x >= 0, a*x for x < 0 (any real a; ONNX's LeakyRelu).

Two linear pieces meeting at 0 with the left slope a node parameter: interval, relaxation and alpha as
`gridverify.ops.kinked` gives them (convex for a <= 1: ``s*x`` below and the chord above; concave for
a > 1: the chord below and ``s*x`` above, ``s`` between a and 1). Every line is rounded outward by the
registry (a*x is inexact in floating point), except for a = 0 and a = -1. Precondition: none.
"""

import torch
from torch import Tensor

from gridverify.ops import kinked
from gridverify.ops.registry import OpDef, Relaxation, register


def _forward(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return torch.where(x >= 0, x, x * negative_slope)


def _interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], negative_slope: float = 0.01
) -> tuple[Tensor, Tensor]:
    return kinked.interval(lows[0], ups[0], negative_slope)


def _relax(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, negative_slope: float = 0.01
) -> Relaxation:
    return kinked.relax(lows[0], ups[0], alpha, float(negative_slope))


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], negative_slope: float = 0.01) -> Tensor:
    return kinked.init_alpha(lows[0], ups[0], float(negative_slope))


SLOPES = (0.01, 0.2, -0.5, 2.5, 0.0)
"""The left slopes the soundness tests sample."""

OP = register(
    OpDef(
        name="leaky_relu",
        forward=_forward,
        interval=_interval,
        relax=_relax,
        n_alpha=1,
        init_alpha=_init,
        kink_at_zero=True,
        onnx_types=("LeakyRelu",),
        sample_params=tuple({"negative_slope": a} for a in SLOPES),
    )
)

"""relu(x) = max(x, 0).

Relaxation on ``[l, u]``: exact when ``l >= 0`` (y = x) or ``u <= 0`` (y = 0); otherwise
``alpha*x <= relu(x) <= u*(x - l)/(u - l)`` with ``alpha`` in [0, 1] (default: 1 if u > -l else 0, CROWN's
adaptive choice). Precondition: none. Range ``[0, inf)``. The chord's offset is rounded outward by the
registry (`gridverify.ops.registry.outward`); the other lines are exact in floating point.
"""

import math

import torch
from torch import Tensor, nn

from gridverify.ops.registry import OpDef, Relaxation, register, same_shape


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    return torch.relu(lows[0]), torch.relu(ups[0])


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    l, u = lows[0], ups[0]
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    chord = torch.where(unstable, u / width, active.to(u.dtype))
    ub = torch.where(unstable, -chord * l, torch.zeros_like(l))
    lw = torch.where(unstable, alpha[0], active.to(u.dtype))
    # alpha*x <= relu(x) holds as rounded (|fl(alpha*x)| <= |x| and sign kept); only the chord is widened.
    return Relaxation((lw,), torch.zeros_like(lw), (chord,), ub, exact_lower=True, exact_upper=~unstable)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
    return (ups[0] > -lows[0]).to(ups[0].dtype).unsqueeze(0)


OP = register(
    OpDef(
        name="relu",
        kink_at_zero=True,
        kind="nonlinear",
        arity=1,
        forward=torch.relu,
        shape=same_shape,
        interval=_interval,
        value_range=(0.0, math.inf),
        relax=_relax,
        n_alpha=1,
        init_alpha=_init,
        torch_functions=(torch.relu, torch.nn.functional.relu, "relu", nn.ReLU),
        onnx_types=("Relu",),
    )
)

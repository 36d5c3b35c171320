"""floor(x): nondecreasing step function (discontinuous).

Relaxation on ``[l, u]`` with slope ``s = alpha`` in [0, 1] for each line:
``s*x + max((1 - s)*l - 1, floor(l) - s*u) <= floor(x) <= s*x + min((1 - s)*u, floor(u) - s*l)``,
from ``x - 1 < floor(x) <= x`` and ``floor(l) <= floor(x) <= floor(u)``. Default: slope 1 when the box is
at least one unit wide, else 0 (then exact when ``floor(l) = floor(u)``). Precondition: none.
Sloped lines are rounded outward by the registry; the constant ones are exact.
"""

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation, register


def _interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    return torch.floor(lows[0]), torch.floor(ups[0])


def _relax(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor) -> Relaxation:
    l, u = lows[0], ups[0]
    sl, su = alpha[0], alpha[1]
    lb = torch.maximum((1 - sl) * l - 1, torch.floor(l) - sl * u)
    ub = torch.minimum((1 - su) * u, torch.floor(u) - su * l)
    # Slope 0: the constants floor(l), floor(u) exactly (fl(l - 1) <= floor(l), fl(u) >= floor(u)).
    return Relaxation((sl,), lb, (su,), ub, exact_lower=sl == 0, exact_upper=su == 0)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Tensor:
    wide = ((ups[0] - lows[0]) >= 1).to(ups[0].dtype)
    return torch.stack([wide, wide])


OP = register(
    OpDef(
        name="floor",
        forward=torch.floor,
        interval=_interval,
        relax=_relax,
        n_alpha=2,
        init_alpha=_init,
        sympy_heads=("floor",),
        torch_functions=(torch.floor, "floor"),
        onnx_types=("Floor",),
    )
)

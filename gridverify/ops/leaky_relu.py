"""leaky_relu(x; negative_slope=a) = x for x >= 0, a*x for x < 0 (any real a; ONNX's LeakyRelu).

Relaxation on ``[l, u]``: exact lines when ``l >= 0`` (y = x) or ``u <= 0`` (y = a*x). Across 0, with
``lo = min(a, 1)``, ``hi = max(a, 1)`` and ``s = lo + alpha*(hi - lo)`` for ``alpha`` in [0, 1]:

- ``a <= 1`` (convex): ``s*x <= f(x) <= chord(x) = a*l + (u - a*l)/(u - l) * (x - l)``;
- ``a > 1`` (concave): ``chord(x) <= f(x) <= s*x``.

``s*x`` lies on the right side of both pieces because ``lo <= s <= hi`` and the pieces meet at 0; the chord
joins the endpoints of a convex (concave) function. Default alpha: slope 1 if ``u > -l``, else slope a
(CROWN's adaptive choice, as relu). Every line is rounded outward by the registry. Interval: the image of
the endpoints, widened to include f(0) = 0 when the box straddles 0 (f is not monotone for a < 0).
Precondition: none.
"""

import torch
from torch import Tensor

from gridverify.ops.registry import OpDef, Relaxation, register, same_shape


def _forward(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return torch.where(x >= 0, x, x * negative_slope)


def _interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], negative_slope: float = 0.01
) -> tuple[Tensor, Tensor]:
    l, u = lows[0], ups[0]
    fl, fu = _forward(l, negative_slope), _forward(u, negative_slope)
    lo, hi = torch.minimum(fl, fu), torch.maximum(fl, fu)
    straddle = (l < 0) & (u > 0)
    zero = torch.zeros_like(lo)
    return torch.where(straddle, torch.minimum(lo, zero), lo), torch.where(
        straddle, torch.maximum(hi, zero), hi
    )


def _relax(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, negative_slope: float = 0.01
) -> Relaxation:
    l, u = lows[0], ups[0]
    a = float(negative_slope)
    active, inactive = l >= 0, u <= 0
    unstable = ~(active | inactive)
    width = torch.where(unstable, u - l, torch.ones_like(u))
    chord = torch.where(unstable, (u - a * l) / width, torch.ones_like(u))
    chord_b = torch.where(unstable, a * l - chord * l, torch.zeros_like(l))
    lo_s, hi_s = min(a, 1.0), max(a, 1.0)
    origin = lo_s + alpha[0] * (hi_s - lo_s)
    exact_slope = torch.where(active, torch.ones_like(u), torch.full_like(u, a))
    through = torch.where(unstable, origin, exact_slope)
    chord = torch.where(unstable, chord, exact_slope)
    zero = torch.zeros_like(through)
    if a <= 1.0:
        return Relaxation((through,), zero, (chord,), chord_b)
    return Relaxation((chord,), chord_b, (through,), zero)


def _init(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], negative_slope: float = 0.01) -> Tensor:
    l, u = lows[0], ups[0]
    to_one = (u > -l).to(u.dtype)
    return (to_one if negative_slope <= 1.0 else 1.0 - to_one).unsqueeze(0)


OP = register(
    OpDef(
        name="leaky_relu",
        kink_at_zero=True,
        kind="nonlinear",
        arity=1,
        forward=_forward,
        shape=same_shape,
        interval=_interval,
        relax=_relax,
        n_alpha=1,
        init_alpha=_init,
        onnx_types=("LeakyRelu",),
        sample_params=(
            {"negative_slope": 0.01},
            {"negative_slope": 0.2},
            {"negative_slope": -0.5},
            {"negative_slope": 2.5},
            {"negative_slope": 0.0},
        ),
    )
)

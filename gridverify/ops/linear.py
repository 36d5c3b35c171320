"""linear(x; weight, bias) = x @ weight.T + bias over the last axis (weight dense or sparse, (k, n)).

Exact: bound propagation transposes it (A @ weight). Interval: centre-radius form,
``y_c = W x_c + b``, ``y_r = |W| x_r``.
"""

from typing import Any

import torch
from torch import Tensor, nn

from gridverify.ops.registry import OpDef, register


def _apply(x: Tensor, w: Tensor) -> Tensor:
    if not w.is_sparse:
        return x @ w.T
    flat = x.reshape(-1, x.shape[-1])
    out: Tensor = torch.sparse.mm(w, flat.T)  # typed Any by torch's stubs
    return out.T.reshape(*x.shape[:-1], w.shape[0])


def _forward(x: Tensor, weight: Any, bias: Any = None) -> Tensor:
    y = _apply(x, weight.like(x))
    return y if bias is None else y + bias.like(x)


def _interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], weight: Any, bias: Any = None
) -> tuple[Tensor, Tensor]:
    l, u = lows[0], ups[0]
    centre = _forward(0.5 * (l + u), weight, bias)
    w = weight.like(l)
    radius = _apply(0.5 * (u - l), w.abs())
    return centre - radius, centre + radius


def _abs(x: Tensor, weight: Any, bias: Any = None) -> Tensor:
    """``x @ |W|.T`` (forward mode's radius, `gridverify.bounds.forward`)."""
    return _apply(x, weight.like(x).abs())


def _adjoint(a: Tensor, weight: Any, bias: Any = None) -> tuple[Tensor, ...]:
    w = weight.like(a)
    if not w.is_sparse:
        return (a @ w,)
    flat = a.reshape(-1, a.shape[-1])
    return (torch.sparse.mm(w.t(), flat.T).T.reshape(*a.shape[:-1], w.shape[1]),)


def _constant_term(weight: Any, bias: Any = None) -> Any:
    return bias


def _shape(shape: tuple[int, ...], weight: Any, bias: Any = None) -> tuple[int, ...]:
    k, n = weight.shape
    if not shape or shape[-1] != n:
        raise ValueError(f"linear with weight {weight.shape} needs input shape (..., {n}), got {shape}")
    if bias is not None and bias.shape != (k,):
        raise ValueError(f"linear bias must have shape ({k},), got {bias.shape}")
    return (*shape[:-1], k)


OP = register(
    OpDef(
        name="linear",
        mixes=True,
        kind="linear",
        forward=_forward,
        shape=_shape,
        interval=_interval,
        adjoint=_adjoint,
        abs_linear=_abs,
        constant_term=_constant_term,
        torch_functions=(torch.nn.functional.linear, nn.Linear),
        onnx_types=("Gemm",),
    )
)

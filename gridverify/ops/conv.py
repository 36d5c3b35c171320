"""Convolutions as exact linear maps (1-D, 2-D and 3-D: the spatial rank is the weight's rank less 2).

- ``conv(x; weight, bias, stride, padding, dilation, groups)``: ``x`` of shape ``(C_in, *spatial)``, weight
  ``(C_out, C_in / groups, *kernel)``, as `torch.nn.functional.conv2d` (symmetric ``padding`` per axis);
- ``conv_transpose(x; weight, bias, stride, padding, output_padding, dilation, groups)``: weight
  ``(C_in, C_out / groups, *kernel)``, as `torch.nn.functional.conv_transpose2d`.

Each is the transpose of the other (without bias), so bound propagation passes coefficients ``a`` of
shape ``(b, m, C_out, *spatial_out)`` back through one call of the other (`adjoint`), with the output
padding that restores the input's spatial size. Interval: centre-radius form, ``y_c = W * x_c + b``,
``y_r = |W| * x_r``. The ONNX front end folds a following BatchNormalization into the weights.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gridverify.const import Const
from gridverify.ops.registry import OpDef, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

Ints = tuple[int, ...]  # one entry per spatial dimension (strides, paddings, dilations, sizes)


@dataclass(frozen=True)
class Geometry:
    """A node's parameters besides ``weight`` and ``bias``, one entry per spatial axis."""

    stride: Ints = ()
    padding: Ints = ()
    dilation: Ints = ()
    groups: int = 1
    output_padding: Ints = ()  # conv_transpose: added to one side of the output
    in_spatial: Ints = ()  # conv: the input's spatial size (the adjoint restores it)


def _rank(weight: Any) -> int:
    return len(weight.shape) - 2


def _channel_scale(w: Tensor, g: Geometry) -> bool:
    """A depthwise 1x1 convolution (a batch norm): both the conv and its transpose scale each channel,
    computed as a product (torch's grouped convolutions are slow on the CPU)."""
    return (
        g.groups == w.shape[0]
        and w.shape[1] == 1
        and all(k == 1 for k in w.shape[2:])
        and all(v == 1 for v in g.stride)
        and not any(g.padding)
        and not any(g.output_padding)
    )


def _conv(x: Tensor, w: Tensor, g: Geometry) -> Tensor:
    if _channel_scale(w, g):
        return x * w.reshape(1, -1, *(1,) * (w.ndim - 2))
    return _CONV[w.ndim - 2](x, w, None, g.stride, g.padding, g.dilation, g.groups)


def _conv_t(x: Tensor, w: Tensor, g: Geometry) -> Tensor:
    if _channel_scale(w, g):
        return x * w.reshape(1, -1, *(1,) * (w.ndim - 2))
    return _CONV_T[w.ndim - 2](x, w, None, g.stride, g.padding, g.output_padding, g.groups, g.dilation)


def _batched(apply: Callable[[Tensor], Tensor], x: Tensor, rank: int, bias: Any = None) -> Tensor:
    """``apply`` on ``x`` with its leading (batch, spec, ...) dims merged into one, ``(n, C, *spatial)``,
    then split again, plus ``bias`` per channel."""
    lead = tuple(x.shape[: x.ndim - rank - 1])
    y = apply(x.reshape(-1, *x.shape[x.ndim - rank - 1 :]))
    y = y.reshape(*lead, *y.shape[1:])
    return y if bias is None else y + bias.like(y).reshape(-1, *(1,) * rank)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_t_out(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _centre_radius(forward: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """Interval of a linear map (``forward``) over a box: its centre's image -+ ``|W|`` times the radius."""

    def interval(
        lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], weight: Any, bias: Any = None, **geometry: Any
    ) -> tuple[Tensor, Tensor]:
        l, u = lows[0], ups[0]
        centre = forward(0.5 * (l + u), weight, bias, **geometry)
        radius = forward(0.5 * (u - l), weight, None, w=weight.like(l).abs(), **geometry)
        return centre - radius, centre + radius

    return interval


def _abs_of(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``|W| * x`` (forward mode's radius, `gridverify.bounds.forward`)."""

    def abs_linear(x: Tensor, weight: Any, bias: Any = None, **geometry: Any) -> Tensor:
        return forward(x, weight, None, w=weight.like(x).abs(), **geometry)

    return abs_linear


def _constant(weight: Any, bias: Any = None, **geometry: Any) -> Any:
    return None if bias is None else Const(bias.tensor.reshape(-1, *(1,) * _rank(weight)))


def _forward_of(apply: Callable[[Tensor, Tensor, Geometry], Tensor]) -> Callable[..., Tensor]:
    """The op's forward from ``apply(x, w, geometry)`` on ``(n, C, *spatial)``; ``w`` (a tensor) replaces
    ``weight`` when given (the interval's ``|W|``)."""

    def forward(x: Tensor, weight: Any, bias: Any = None, w: Tensor | None = None, **geometry: Any) -> Tensor:
        g, w = Geometry(**geometry), weight.like(x) if w is None else w
        return _batched(lambda flat: apply(flat, w, g), x, _rank(weight), bias)

    return forward


def _output(name: str, shape: Ints, bias: Any, channels: int, spatial: list[int]) -> tuple[int, ...]:
    """``(channels, *spatial)`` once ``bias`` fits the channels and no spatial size is empty."""
    if bias is not None and bias.shape != (channels,):
        raise ValueError(f"{name} bias must have shape ({channels},), got {bias.shape}")
    if min(spatial) < 1:
        raise ValueError(f"{name} of input {shape} has an empty output {spatial}")
    return (channels, *spatial)


def _conv_shape(shape: Ints, weight: Any, bias: Any = None, **geometry: Any) -> tuple[int, ...]:
    """The output shape; also checks ``in_spatial`` (the input's spatial size, kept for the adjoint)."""
    g = Geometry(**geometry)
    rank, (c_out, c_in_g, *kernel) = _rank(weight), weight.shape
    if len(shape) != rank + 1 or shape[0] != c_in_g * g.groups or c_out % g.groups:
        raise ValueError(f"conv with weight {weight.shape}, groups {g.groups} cannot take input {shape}")
    if g.in_spatial and tuple(g.in_spatial) != tuple(shape[1:]):
        raise ValueError(f"conv in_spatial {g.in_spatial} does not match its input {shape}")
    spatial = [_conv_out(*a) for a in zip(shape[1:], kernel, g.stride, g.padding, g.dilation)]
    return _output("conv", shape, bias, c_out, spatial)


def _conv_t_shape(shape: Ints, weight: Any, bias: Any = None, **geometry: Any) -> tuple[int, ...]:
    g = Geometry(**geometry)
    rank, (c_in, c_out_g, *kernel) = _rank(weight), weight.shape
    if len(shape) != rank + 1 or shape[0] != c_in or c_in % g.groups:
        raise ValueError(f"conv_transpose with weight {weight.shape} cannot take input {shape}")
    if any(op >= max(s, d) for op, s, d in zip(g.output_padding, g.stride, g.dilation)):
        raise ValueError(f"conv_transpose output_padding {g.output_padding} must be below stride or dilation")
    sizes = zip(shape[1:], kernel, g.stride, g.padding, g.output_padding, g.dilation)
    return _output("conv_transpose", shape, bias, c_out_g * g.groups, [_conv_t_out(*a) for a in sizes])


def _conv_adjoint(a: Tensor, weight: Any, bias: Any = None, **geometry: Any) -> tuple[Tensor, ...]:
    """The transposed convolution, with the output padding that restores the input's spatial size."""
    g, rank = Geometry(**geometry), _rank(weight)
    sizes = zip(a.shape[a.ndim - rank :], weight.shape[2:], g.stride, g.padding, g.dilation)
    full = [_conv_t_out(o, k, s, p, 0, d) for o, k, s, p, d in sizes]
    t = Geometry(g.stride, g.padding, g.dilation, g.groups, tuple(n - f for n, f in zip(g.in_spatial, full)))
    return (_batched(lambda flat: _conv_t(flat, weight.like(a), t), a, rank),)


def _conv_t_adjoint(a: Tensor, weight: Any, bias: Any = None, **geometry: Any) -> tuple[Tensor, ...]:
    """The convolution (the transpose's output padding plays no part in it)."""
    g = Geometry(**geometry)
    plain = Geometry(g.stride, g.padding, g.dilation, g.groups)
    return (_batched(lambda flat: _conv(flat, weight.like(a), plain), a, _rank(weight)),)


def _linear_op(
    name: str,
    forward: Callable[..., Tensor],
    shape: Callable[..., Ints],
    adjoint: Callable[..., Any],
    **facts: Any,
) -> OpDef:
    return OpDef(
        name,
        forward,
        kind="linear",
        shape=shape,
        interval=_centre_radius(forward),
        adjoint=adjoint,
        abs_linear=_abs_of(forward),
        constant_term=_constant,
        **facts,
    )


_W1 = Const(torch.linspace(-1.0, 1.0, 5 * 3 * 2, dtype=torch.float64).reshape(5, 3, 2).sin())
_B1 = Const(torch.tensor([0.5, -1.0, 0.0, 2.0, 1e-3], dtype=torch.float64))
_WT1 = Const(torch.linspace(-1.0, 1.0, 3 * 2 * 3, dtype=torch.float64).reshape(3, 2, 3).cos())
_BT1 = Const(torch.tensor([1.0, -0.25], dtype=torch.float64))

CONV = register(
    _linear_op(
        "conv",
        _forward_of(_conv),
        _conv_shape,
        _conv_adjoint,
        onnx_types=("Conv",),
        sample_params=(
            dict(weight=_W1, bias=_B1, stride=(1,), padding=(1,), dilation=(1,), groups=1, in_spatial=(4,)),
            dict(weight=_W1, bias=None, stride=(2,), padding=(0,), dilation=(2,), groups=1, in_spatial=(4,)),
        ),
    )
)
CONV_TRANSPOSE = register(
    _linear_op(
        "conv_transpose",
        _forward_of(_conv_t),
        _conv_t_shape,
        _conv_t_adjoint,
        onnx_types=("ConvTranspose",),
        sample_params=(
            dict(weight=_WT1, bias=_BT1, stride=(2,), padding=(1,), output_padding=(1,), dilation=(1,)),
            dict(weight=_WT1, bias=None, stride=(1,), padding=(0,), output_padding=(0,), dilation=(1,)),
        ),
    )
)

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

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gridverify.const import Const
from gridverify.ops.registry import OpDef, register

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

Ints = tuple[int, ...]  # one entry per spatial dimension (strides, paddings, dilations, sizes)


def _rank(weight: Any) -> int:
    return len(weight.shape) - 2


def _channel_scale(w: Tensor, stride: Ints, padding: Ints, groups: int, out_pad: Ints = ()) -> bool:
    """A depthwise 1x1 convolution (a batch norm): both the conv and its transpose scale each channel,
    computed as a product (torch's grouped convolutions are slow on the CPU)."""
    return (
        groups == w.shape[0]
        and w.shape[1] == 1
        and all(k == 1 for k in w.shape[2:])
        and all(v == 1 for v in stride)
        and not any(padding)
        and not any(out_pad)
    )


def _conv(x: Tensor, w: Tensor, stride: Ints, padding: Ints, dilation: Ints, groups: int) -> Tensor:
    if _channel_scale(w, stride, padding, groups):
        return x * w.reshape(1, -1, *(1,) * (w.ndim - 2))
    return _CONV[w.ndim - 2](x, w, None, stride, padding, dilation, groups)


def _conv_t(
    x: Tensor, w: Tensor, stride: Ints, padding: Ints, out_pad: Ints, dilation: Ints, groups: int
) -> Tensor:
    if _channel_scale(w, stride, padding, groups, out_pad):
        return x * w.reshape(1, -1, *(1,) * (w.ndim - 2))
    return _CONV_T[w.ndim - 2](x, w, None, stride, padding, out_pad, groups, dilation)


def _flat(x: Tensor, rank: int) -> tuple[Tensor, tuple[int, ...]]:
    """Leading (batch, spec, ...) dims merged into one: ``(n, C, *spatial)``."""
    lead = tuple(x.shape[: x.ndim - rank - 1])
    return x.reshape(-1, *x.shape[x.ndim - rank - 1 :]), lead


def _add_bias(y: Tensor, bias: Any, rank: int) -> Tensor:
    return y if bias is None else y + bias.like(y).reshape(-1, *(1,) * rank)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_t_out(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


# -- conv -------------------------------------------------------------------------------------------------
def _conv_forward(
    x: Tensor,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
    in_spatial: Ints = (),
    w: Tensor | None = None,
) -> Tensor:
    """``w`` (a tensor) replaces ``weight`` when given (the interval's ``|W|``)."""
    rank = _rank(weight)
    flat, lead = _flat(x, rank)
    y = _conv(flat, weight.like(x) if w is None else w, stride, padding, dilation, groups)
    return _add_bias(y.reshape(*lead, *y.shape[1:]), bias, rank)


def _conv_shape(
    shape: Ints,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
) -> tuple[int, ...]:
    rank, (c_out, c_in_g, *kernel) = _rank(weight), weight.shape
    if len(shape) != rank + 1 or shape[0] != c_in_g * groups or c_out % groups:
        raise ValueError(f"conv with weight {weight.shape}, groups {groups} cannot take input {shape}")
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"conv bias must have shape ({c_out},), got {bias.shape}")
    spatial = [_conv_out(*a) for a in zip(shape[1:], kernel, stride, padding, dilation)]
    if min(spatial) < 1:
        raise ValueError(f"conv of input {shape} with kernel {kernel} has an empty output")
    return (c_out, *spatial)


def _centre_radius(
    forward: Any,
    lows: tuple[Tensor, ...],
    ups: tuple[Tensor, ...],
    weight: Any,
    bias: Any = None,
    **params: Any,
) -> tuple[Tensor, Tensor]:
    """Interval of a linear map (``forward``) over a box: its centre's image -+ ``|W|`` times the radius."""
    l, u = lows[0], ups[0]
    centre = forward(0.5 * (l + u), weight, bias, **params)
    radius = forward(0.5 * (u - l), weight, None, **params, w=weight.like(l).abs())
    return centre - radius, centre + radius


def _conv_abs(x: Tensor, weight: Any, bias: Any = None, **params: Any) -> Tensor:
    """``|W| * x`` (forward mode's radius, `gridverify.bounds.forward`)."""
    return _conv_forward(x, weight, None, **params, w=weight.like(x).abs())


def _conv_t_abs(x: Tensor, weight: Any, bias: Any = None, **params: Any) -> Tensor:
    return _conv_t_forward(x, weight, None, **params, w=weight.like(x).abs())


def _conv_interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], *args: Any, **params: Any
) -> tuple[Tensor, Tensor]:
    return _centre_radius(_conv_forward, lows, ups, *args, **params)


def _conv_adjoint(
    a: Tensor,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
    in_spatial: Ints = (),
) -> tuple[Tensor, ...]:
    rank = _rank(weight)
    flat, lead = _flat(a, rank)
    kernel = weight.shape[2:]
    full = [
        _conv_t_out(o, k, s, p, 0, d)
        for o, k, s, p, d in zip(flat.shape[2:], kernel, stride, padding, dilation)
    ]
    out_pad = tuple(n - f for n, f in zip(in_spatial, full))
    x = _conv_t(flat, weight.like(a), stride, padding, out_pad, dilation, groups)
    return (x.reshape(*lead, *x.shape[1:]),)


def _conv_constant(weight: Any, bias: Any = None, **params: Any) -> Any:
    return None if bias is None else Const(bias.tensor.reshape(-1, *(1,) * _rank(weight)))


def _conv_bound_shape(shape: Ints, **params: Any) -> tuple[int, ...]:
    """Shape rule that also checks ``in_spatial`` (the input's spatial size, kept for the adjoint)."""
    if tuple(params.get("in_spatial", shape[1:])) != tuple(shape[1:]):
        raise ValueError(f"conv in_spatial {params['in_spatial']} does not match its input {shape}")
    return _conv_shape(shape, **{k: v for k, v in params.items() if k != "in_spatial"})


# -- conv_transpose ---------------------------------------------------------------------------------------
def _conv_t_forward(
    x: Tensor,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    output_padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
    w: Tensor | None = None,
) -> Tensor:
    rank = _rank(weight)
    flat, lead = _flat(x, rank)
    y = _conv_t(flat, weight.like(x) if w is None else w, stride, padding, output_padding, dilation, groups)
    return _add_bias(y.reshape(*lead, *y.shape[1:]), bias, rank)


def _conv_t_shape(
    shape: Ints,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    output_padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
) -> tuple[int, ...]:
    rank, (c_in, c_out_g, *kernel) = _rank(weight), weight.shape
    if len(shape) != rank + 1 or shape[0] != c_in or c_in % groups:
        raise ValueError(f"conv_transpose with weight {weight.shape} cannot take input {shape}")
    if bias is not None and bias.shape != (c_out_g * groups,):
        raise ValueError(f"conv_transpose bias must have shape ({c_out_g * groups},), got {bias.shape}")
    if any(op >= max(s, d) for op, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"conv_transpose output_padding {output_padding} must be below stride or dilation")
    spatial = [_conv_t_out(*a) for a in zip(shape[1:], kernel, stride, padding, output_padding, dilation)]
    if min(spatial) < 1:
        raise ValueError(f"conv_transpose of input {shape} has an empty output")
    return (c_out_g * groups, *spatial)


def _conv_t_interval(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], *args: Any, **params: Any
) -> tuple[Tensor, Tensor]:
    return _centre_radius(_conv_t_forward, lows, ups, *args, **params)


def _conv_t_adjoint(
    a: Tensor,
    weight: Any,
    bias: Any = None,
    stride: Ints = (),
    padding: Ints = (),
    output_padding: Ints = (),
    dilation: Ints = (),
    groups: int = 1,
) -> tuple[Tensor, ...]:
    flat, lead = _flat(a, _rank(weight))
    x = _conv(flat, weight.like(a), stride, padding, dilation, groups)
    return (x.reshape(*lead, *x.shape[1:]),)


_W1 = Const(torch.linspace(-1.0, 1.0, 5 * 3 * 2, dtype=torch.float64).reshape(5, 3, 2).sin())
_WT1 = Const(torch.linspace(-1.0, 1.0, 3 * 2 * 3, dtype=torch.float64).reshape(3, 2, 3).cos())

CONV = register(
    OpDef(
        name="conv",
        kind="linear",
        arity=1,
        forward=_conv_forward,
        shape=_conv_bound_shape,
        interval=_conv_interval,
        adjoint=_conv_adjoint,
        abs_linear=_conv_abs,
        constant_term=_conv_constant,
        onnx_types=("Conv",),
        sample_params=(
            {
                "weight": _W1,
                "bias": Const(torch.tensor([0.5, -1.0, 0.0, 2.0, 1e-3], dtype=torch.float64)),
                "stride": (1,),
                "padding": (1,),
                "dilation": (1,),
                "groups": 1,
                "in_spatial": (4,),
            },
            {
                "weight": _W1,
                "bias": None,
                "stride": (2,),
                "padding": (0,),
                "dilation": (2,),
                "groups": 1,
                "in_spatial": (4,),
            },
        ),
    )
)
CONV_TRANSPOSE = register(
    OpDef(
        name="conv_transpose",
        kind="linear",
        arity=1,
        forward=_conv_t_forward,
        shape=_conv_t_shape,
        interval=_conv_t_interval,
        adjoint=_conv_t_adjoint,
        abs_linear=_conv_t_abs,
        constant_term=_conv_constant,
        onnx_types=("ConvTranspose",),
        sample_params=(
            {
                "weight": _WT1,
                "bias": Const(torch.tensor([1.0, -0.25], dtype=torch.float64)),
                "stride": (2,),
                "padding": (1,),
                "output_padding": (1,),
                "dilation": (1,),
                "groups": 1,
            },
            {
                "weight": _WT1,
                "bias": None,
                "stride": (1,),
                "padding": (0,),
                "output_padding": (0,),
                "dilation": (1,),
                "groups": 1,
            },
        ),
    )
)

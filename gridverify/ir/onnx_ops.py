"""Translations of ONNX nodes into builder calls (see `gridverify.ir.from_onnx` for the batch convention).

Values: a traced tensor is a `Traced` (a `Var` of per-sample values plus where the batch dim sits in ONNX's
layout); a constant is a numpy array with its full ONNX shape; an absent optional input is ``None``. A
handler takes ``(ctx, node, *inputs)`` and returns a value, or a tuple of values for a multi-output op; it
raises `Unsupported` with the reason for a node it does not translate. Nodes whose inputs are all constant
never reach a handler: the front end evaluates them with ONNX's reference implementation.

`onnx_table` maps ONNX op types to registered ops, derived from each op's ``onnx_types`` in `REGISTRY`;
`HANDLERS` holds the translations by ONNX op type, and a registered op type without one is applied
elementwise (unary ops without parameters: Relu, Sin, Exp, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from gridverify.const import Const
from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.onnx_shape_ops import (
    SHAPE_HANDLERS,
    OnnxContext,
    OnnxNode,
    Traced,
    Unsupported,
    Value,
    align,
    as_float,
    move_back,
    move_last,
    take,
)
from gridverify.ops import REGISTRY, OpDef

__all__ = ["HANDLERS", "OnnxContext", "OnnxNode", "Traced", "Unsupported", "Value", "onnx_table"]

Handler = Callable[..., Any]
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (onnx.TensorProto)


def onnx_table(registry: Mapping[str, OpDef] = REGISTRY) -> Mapping[str, str]:
    """ONNX op type -> registered op name, from every ``onnx_types`` entry of ``registry``."""
    table: dict[str, str] = {}
    for op in registry.values():
        for onnx_type in op.onnx_types:
            if table.setdefault(onnx_type, op.name) != op.name:
                raise ValueError(f"ONNX type {onnx_type!r} claimed by {table[onnx_type]!r} and {op.name!r}")
    return MappingProxyType(table)


def elementwise(op: str, ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    """A registered unary op without parameters, applied to every entry."""
    return Traced(ctx.builder.apply(op, x.var, name=node.name), x.batch_axis)


# -- arithmetic -----------------------------------------------------------------------------------------
def _binary(combine: Callable[[GraphBuilder, Any, Any], Var]) -> Handler:
    def handler(ctx: OnnxContext, node: OnnxNode, x: Value, y: Value) -> Traced:
        (a, b), axis = align(ctx, (x, y))
        return Traced(combine(ctx.builder, a, b), axis)

    return handler


def _scalar(value: Value, what: str) -> float:
    if isinstance(value, Traced):
        raise Unsupported(f"{what} is a traced tensor, not a constant")
    distinct = np.unique(np.asarray(value, dtype=np.float64))
    if distinct.size != 1:
        raise Unsupported(f"{what} takes {distinct.size} different values; one constant number is needed")
    return float(distinct[0])


def _pow(ctx: OnnxContext, node: OnnxNode, x: Value, y: Value) -> Traced:
    """``x ** e`` for one constant exponent: integers -> power / square / reciprocal, 0.5 -> sqrt."""
    if not isinstance(x, Traced):
        raise Unsupported("Pow with a constant base and a traced exponent")
    e = _scalar(y, "the exponent")
    (base, exps), axis = align(ctx, (x, y))
    b = ctx.builder
    shape = tuple(np.broadcast_shapes(base.shape, np.shape(exps)))
    base = b.broadcast_to(base, shape) if shape != base.shape else base
    if abs(e) == 0.5:
        root = b.apply("sqrt", base)
        return Traced(root if e > 0 else b.apply("reciprocal", root), axis)
    if e != int(e):
        raise Unsupported(f"exponent {e} (integers and +-0.5 only)")
    return Traced(b.power(base, int(e)), axis)


def _clip(ctx: OnnxContext, node: OnnxNode, x: Traced, lo: Value = None, hi: Value = None) -> Traced:
    """Bounds are inputs from opset 11 and attributes before; absent bounds are infinite."""
    lo = node.attrs.get("min", -math.inf) if lo is None else _scalar(lo, "the Clip minimum")
    hi = node.attrs.get("max", math.inf) if hi is None else _scalar(hi, "the Clip maximum")
    if lo > hi:
        raise Unsupported(f"Clip with min {lo} > max {hi}")
    if (lo, hi) == (-math.inf, math.inf):
        return x
    b = ctx.builder
    var = b.apply("relu", x.var) if (lo, hi) == (0.0, math.inf) else b.apply("clip", x.var, lo=lo, hi=hi)
    return Traced(var, x.batch_axis)


def _where(ctx: OnnxContext, node: OnnxNode, cond: Value, x: Value, y: Value) -> Traced:
    """A constant condition selects entries exactly: a gather when both branches are traced, a mask
    ``x * cond + where(cond, 0, y)`` when one is constant."""
    if isinstance(cond, Traced):
        raise Unsupported("Where with a traced condition")
    (mask, a, c), axis = align(ctx, (np.asarray(cond, dtype=bool), x, y))
    shape = tuple(np.broadcast_shapes(np.shape(mask), _shape_of(a), _shape_of(c)))
    mask = np.broadcast_to(np.asarray(mask) != 0, shape)
    a, c = (_broadcast(ctx.builder, v, shape) for v in (a, c))
    return Traced(_select(ctx.builder, mask, a, c), axis)


def _shape_of(v: Var | np.ndarray) -> tuple[int, ...]:
    return v.shape if isinstance(v, Var) else np.shape(v)


def _broadcast(b: GraphBuilder, v: Var | np.ndarray, shape: tuple[int, ...]) -> Var | np.ndarray:
    if isinstance(v, Var):
        return b.broadcast_to(v, shape) if v.shape != shape else v
    return np.broadcast_to(v, shape)


def _select(b: GraphBuilder, mask: np.ndarray, a: Var | np.ndarray, c: Var | np.ndarray) -> Var:
    if isinstance(a, Var) and isinstance(c, Var):
        n = mask.size
        flat = b.concat([b.reshape(a, (n,)), b.reshape(c, (n,))])
        picks = np.where(mask.reshape(-1), np.arange(n), n + np.arange(n))
        return b.gather(flat, picks.reshape(mask.shape))
    if isinstance(a, Var):
        return b.add(b.mul(a, mask.astype(np.float64)), np.where(mask, 0.0, c))
    return b.add(b.mul(c, (~mask).astype(np.float64)), np.where(mask, a, 0.0))


def _cast(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    if node.attrs.get("to") not in _FLOAT_TYPES:
        raise Unsupported(f"Cast of a traced tensor to the non-float type {node.attrs.get('to')}")
    return x


def _identity(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    return x


def _gelu(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    if node.attrs.get("approximate", "none") != "none":
        raise Unsupported(f"Gelu approximate={node.attrs['approximate']!r}; only the exact erf form")
    return elementwise("gelu", ctx, node, x)


# -- products -------------------------------------------------------------------------------------------
def _contract(ctx: OnnxContext, x: Traced, axis: int, w: np.ndarray) -> Traced:
    """Replace ONNX axis ``axis`` of ``x`` (size k) by ``w @ x`` along it, for ``w`` of shape (m, k)."""
    b = ctx.builder
    moved, order = move_last(b, x.var, x.unbatched_axis(axis))
    return Traced(move_back(b, b.linear(moved, ctx.weight(w)), order), x.batch_axis)


def _drop_axis(ctx: OnnxContext, x: Traced, axis: int) -> Traced:
    u = x.unbatched_axis(axis)
    shape = x.var.shape[:u] + x.var.shape[u + 1 :]
    batch = x.batch_axis - 1 if u < x.batch_axis else x.batch_axis
    return Traced(ctx.builder.reshape(x.var, shape), batch)


def _matmul(ctx: OnnxContext, node: OnnxNode, x: Value, y: Value) -> Traced:
    """A constant operand (1-D or 2-D) becomes a linear map along the contracted axis."""
    if isinstance(x, Traced) and isinstance(y, Traced):
        return _matmul_traced(ctx, x, y)
    if isinstance(x, Traced):
        w = as_float(y)
        if w.ndim not in (1, 2):
            raise Unsupported(f"MatMul by a constant of rank {w.ndim} (1-D and 2-D only)")
        return (
            _contract(ctx, x, -1, w.T) if w.ndim == 2 else _drop_axis(ctx, _contract(ctx, x, -1, w[None]), -1)
        )
    a = as_float(x)
    if a.ndim not in (1, 2) or y.rank < 2:
        raise Unsupported(f"MatMul of a constant of rank {a.ndim} and a traced tensor of rank {y.rank}")
    return _contract(ctx, y, -2, a) if a.ndim == 2 else _drop_axis(ctx, _contract(ctx, y, -2, a[None]), -2)


def _matmul_traced(ctx: OnnxContext, x: Traced, y: Traced) -> Traced:
    (a, b), axis = align(ctx, (x, y))
    if axis >= max(x.rank, y.rank) - 2:
        raise Unsupported("MatMul of two traced tensors whose batch dim is a matrix axis")
    return Traced(ctx.builder.matmul(a, b), axis)


def _gemm(ctx: OnnxContext, node: OnnxNode, a: Value, b: Value, c: Value = None) -> Value:
    """``alpha * A' @ B' + beta * C``: one linear node when A is traced (batch first) and B, C constant."""
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    a = _transposed(ctx, a) if node.attrs.get("transA", 0) else a
    b = _transposed(ctx, b) if node.attrs.get("transB", 0) else b
    if (
        isinstance(a, Traced)
        and a.batch_axis == 0
        and not isinstance(b, Traced)
        and not isinstance(c, Traced)
    ):
        bias = None if c is None else _gemm_bias(beta * as_float(c), np.shape(b)[1])
        return Traced(ctx.builder.linear(a.var, ctx.weight(alpha * as_float(b).T), bias), 0)
    product = _matmul(ctx, node, a, b)
    product = product if alpha == 1.0 else Traced(ctx.builder.mul(product.var, alpha), product.batch_axis)
    return product if c is None else _binary(GraphBuilder.add)(ctx, node, product, beta * as_float(c))


def _gemm_bias(c: np.ndarray, m: int) -> np.ndarray:
    if c.ndim == 2 and c.shape[0] != 1:
        raise Unsupported(f"a Gemm bias of shape {c.shape} varies over the batch dim")
    return np.broadcast_to(c.reshape(-1) if c.ndim == 2 else c, (m,)).copy()


def _transposed(ctx: OnnxContext, v: Value) -> Value:
    if isinstance(v, Traced):
        return SHAPE_HANDLERS["Transpose"](ctx, OnnxNode("Transpose", "", {}, 1), v)
    return np.asarray(v).T


# -- reductions -----------------------------------------------------------------------------------------
def _reduce_axes(ctx: OnnxContext, node: OnnxNode, x: Traced, axes: Value) -> tuple[int, ...] | None:
    """ONNX axes of a reduction (input from opset 13 for ReduceSum, 18 for the others; else attribute)."""
    if isinstance(axes, Traced):
        raise Unsupported("reduction axes given by a traced tensor")
    given = node.attrs.get("axes") if axes is None else np.asarray(axes).reshape(-1).tolist()
    if not given:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        raise Unsupported(f"{node.op_type} over every axis, the batch dim included")
    return tuple(int(a) % x.rank for a in given)


def _reduce_sum(ctx: OnnxContext, node: OnnxNode, x: Traced, axes: Value = None) -> Traced:
    onnx_axes = _reduce_axes(ctx, node, x, axes)
    if onnx_axes is None:
        return x
    b, unbatched = ctx.builder, tuple(x.unbatched_axis(a) for a in onnx_axes)
    total = b.sum(x.var, unbatched)
    if node.attrs.get("keepdims", 1):
        kept = [1 if i in unbatched else s for i, s in enumerate(x.var.shape)]
        return Traced(b.reshape(total, kept), x.batch_axis)
    return Traced(total, x.batch_axis - sum(a < x.batch_axis for a in onnx_axes))


def _reduce_mean(ctx: OnnxContext, node: OnnxNode, x: Traced, axes: Value = None) -> Traced:
    onnx_axes = _reduce_axes(ctx, node, x, axes)
    if onnx_axes is None:
        return x
    total = _reduce_sum(ctx, node, x, np.asarray(onnx_axes))
    count = math.prod(x.var.shape[x.unbatched_axis(a)] for a in onnx_axes)
    return Traced(ctx.builder.mul(total.var, 1.0 / count), total.batch_axis)


def _softmax(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    """Over one axis from opset 13; before, over all axes from ``axis`` on (the input coerced to 2-D)."""
    b, axis = ctx.builder, int(node.attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % x.rank
    if ctx.opset >= 13:
        moved, order = move_last(b, x.var, x.unbatched_axis(axis))
        return Traced(move_back(b, softmax_last(b, moved, ctx), order), x.batch_axis)
    if x.batch_axis >= axis:
        raise Unsupported(f"Softmax (opset {ctx.opset}) over axes {axis}.. that include the batch dim")
    head = x.var.shape[: x.unbatched_axis(axis)]
    flat = b.reshape(x.var, (*head, math.prod(x.var.shape[len(head) :])))
    return Traced(b.reshape(softmax_last(b, flat, ctx), x.var.shape), x.batch_axis)


def softmax_last(b: GraphBuilder, x: Var, ctx: OnnxContext) -> Var:
    """Softmax over the last axis as ``s_i = 1 / (1 + sum_{j != i} exp(x_j - x_i))``.

    Equal to ``exp(x_i) / sum_j exp(x_j)``; every term is finite or +inf (then ``s_i = 0``), and the
    denominator is at least 1, so the reciprocal is always in its domain and bounds stay finite. Costs
    ``k (k - 1)`` exp terms for ``k`` classes.
    """
    k = x.shape[-1]
    if k == 1:
        return b.const(torch.ones(x.shape, dtype=torch.float64))
    pairs = [(i, j) for i in range(k) for j in range(k) if j != i]
    diff = np.zeros((len(pairs), k))
    for row, (i, j) in enumerate(pairs):
        diff[row, j], diff[row, i] = 1.0, -1.0
    terms = b.apply("exp", b.linear(x, ctx.weight(diff)))
    sums = b.sum(b.reshape(terms, (*x.shape[:-1], k, k - 1)), axes=(-1,))
    return b.apply("reciprocal", b.add(sums, 1.0))


# -- convolutions and normalisation ---------------------------------------------------------------------
def _spatial_attrs(node: OnnxNode, w: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Strides, symmetric pads and dilations of a Conv / ConvTranspose (explicit pads only)."""
    rank = w.ndim - 2
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        raise Unsupported(f"{node.op_type} auto_pad={auto_pad!r} (explicit pads only)")
    pads = [int(p) for p in node.attrs.get("pads", [0] * (2 * rank))]
    if auto_pad == "VALID":
        pads = [0] * (2 * rank)
    if pads[:rank] != pads[rank:]:
        raise Unsupported(f"{node.op_type} with asymmetric pads {pads}")
    kernel = [int(k) for k in node.attrs.get("kernel_shape", w.shape[2:])]
    if tuple(kernel) != tuple(w.shape[2:]):
        raise Unsupported(f"{node.op_type} kernel_shape {kernel} differs from the weight's {w.shape[2:]}")
    return {
        "stride": tuple(int(v) for v in node.attrs.get("strides", [1] * rank)),
        "padding": tuple(pads[:rank]),
        "dilation": tuple(int(v) for v in node.attrs.get("dilations", [1] * rank)),
    }


def _conv_params(node: OnnxNode, x: Value, w: Value, bias: Value) -> dict[str, Any]:
    """What a Conv and a ConvTranspose node share: weight, bias, groups, strides, pads and dilations."""
    if not isinstance(x, Traced) or isinstance(w, Traced) or isinstance(bias, Traced):
        raise Unsupported(f"{node.op_type} needs a traced input and constant weights and bias")
    if x.batch_axis != 0:
        raise Unsupported(f"{node.op_type} of a tensor whose batch dim is not first")
    weight = as_float(w)
    if weight.ndim - 2 not in (1, 2, 3):
        raise Unsupported(f"{node.op_type} with a weight of rank {weight.ndim} (1-D to 3-D convolutions)")
    b = None if bias is None else Const(as_float(bias).reshape(-1))
    groups = int(node.attrs.get("group", 1))
    return {"weight": Const(weight), "bias": b, "groups": groups, **_spatial_attrs(node, weight)}


def _conv(ctx: OnnxContext, node: OnnxNode, x: Value, w: Value, bias: Value = None) -> Traced:
    """An exact linear ``conv`` node (`gridverify.ops.conv`)."""
    params = _conv_params(node, x, w, bias)
    var = ctx.builder.apply("conv", x.var, name=node.name, in_spatial=tuple(x.var.shape[1:]), **params)
    return Traced(var, 0)


def _conv_transpose(ctx: OnnxContext, node: OnnxNode, x: Value, w: Value, bias: Value = None) -> Traced:
    """An exact linear ``conv_transpose`` node; ``output_shape`` is not translated (give pads)."""
    params = _conv_params(node, x, w, bias)
    if node.attrs.get("output_shape"):
        raise Unsupported("ConvTranspose with output_shape (explicit pads and output_padding only)")
    rank = len(params["weight"].shape) - 2
    out_pad = tuple(int(v) for v in node.attrs.get("output_padding", [0] * rank))
    var = ctx.builder.apply("conv_transpose", x.var, name=node.name, output_padding=out_pad, **params)
    return Traced(var, 0)


def _batch_norm(
    ctx: OnnxContext, node: OnnxNode, x: Value, scale: Value, b: Value, mean: Value, var: Value
) -> Traced:
    """Inference-mode ``y = s * x + t`` per channel (ONNX axis 1), ``s = scale / sqrt(var + eps)``,
    ``t = b - mean * s``: folded into the weights of a preceding conv, conv_transpose or linear node that
    produces the channels (also through a reshape of a linear node's output into channels), else a
    depthwise 1x1 ``conv`` on a channels-first tensor (one exact linear node, which bound propagation
    treats as elementwise: no back-substituted bounds of its own), else a per-channel scale and shift."""
    if not isinstance(x, Traced) or any(isinstance(v, Traced) for v in (scale, b, mean, var)):
        raise Unsupported("BatchNormalization needs a traced input and constant statistics")
    if node.n_outputs > 1 or node.attrs.get("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    eps = float(node.attrs.get("epsilon", np.float32(1e-5)))  # ONNX attributes are float32
    s = as_float(scale).reshape(-1) / np.sqrt(as_float(var).reshape(-1) + eps)
    t = as_float(b).reshape(-1) - as_float(mean).reshape(-1) * s
    folded = _fold_affine(ctx, x, s, t)
    if folded is not None:
        return folded
    if x.batch_axis == 0 and 2 <= len(x.var.shape) <= 4:
        rank = len(x.var.shape) - 1
        weight = Const(s.reshape(-1, 1, *(1,) * rank))
        params = {"stride": (1,) * rank, "padding": (0,) * rank, "dilation": (1,) * rank}
        var = ctx.builder.apply(
            "conv", x.var, name=node.name, weight=weight, bias=Const(t), groups=s.size,
            in_spatial=tuple(x.var.shape[1:]), **params,
        )  # fmt: skip
        return Traced(var, 0)
    shape = [1] * x.rank
    shape[1] = s.size
    scaled = _binary(GraphBuilder.mul)(ctx, node, x, s.reshape(shape))
    return _binary(GraphBuilder.add)(ctx, node, scaled, t.reshape(shape))


def _fold_affine(ctx: OnnxContext, x: Traced, s: np.ndarray, t: np.ndarray) -> Traced | None:
    """``s * x + t`` per channel as one new linear node, when ``x`` (batch first, channels first) is
    produced by a conv, or by a linear map on a 1-D tensor (reshaped into channels or not); else None."""
    b, var = ctx.builder, x.var
    if x.batch_axis != 0 or var.shape[0] != s.size:
        return None
    node = var.node
    if node.op == "reshape" and var.builder.nodes[node.inputs[0]].op == "linear":
        inner = Var(b, node.inputs[0])
        per_channel = inner.shape[-1] // s.size if len(inner.shape) == 1 else 0
        if per_channel * s.size != math.prod(var.shape):
            return None
        folded = _fold_affine(ctx, Traced(inner, 0), np.repeat(s, per_channel), np.repeat(t, per_channel))
        return None if folded is None else Traced(b.reshape(folded.var, var.shape), 0)
    if node.op not in ("conv", "conv_transpose", "linear") or (node.op == "linear" and len(var.shape) != 1):
        return None
    kw = node.kwargs
    w = kw["weight"].tensor
    if w.is_sparse or (node.op == "conv_transpose" and kw["groups"] != 1):
        return None
    bias = torch.zeros(s.size, dtype=torch.float64) if kw["bias"] is None else kw["bias"].tensor
    st = torch.from_numpy(s)
    if node.op == "conv_transpose":
        w = w * st.reshape(1, -1, *(1,) * (w.ndim - 2))
    else:
        w = w * st.reshape(-1, *(1,) * (w.ndim - 1))
    params = {**kw, "weight": Const(w), "bias": Const(bias * st + torch.from_numpy(t))}
    return Traced(b.apply(node.op, Var(b, node.inputs[0]), name=node.name, **params), 0)


def _upsample(ctx: OnnxContext, node: OnnxNode, x: Value, scales: Value = None) -> Traced:
    """Nearest-neighbour upsampling by integer factors (``Upsample``, opset 7-9): a gather."""
    if not isinstance(x, Traced) or isinstance(scales, Traced):
        raise Unsupported("Upsample needs a traced input and constant scales")
    if node.attrs.get("mode", "nearest") != "nearest":
        raise Unsupported(f"Upsample mode {node.attrs['mode']!r} (nearest only)")
    factors = np.asarray(node.attrs.get("scales") if scales is None else scales, dtype=np.float64).reshape(-1)
    if factors.size != x.rank or np.any(factors != np.round(factors)) or np.any(factors < 1):
        raise Unsupported(f"Upsample scales {factors.tolist()} (positive integers only)")
    shape = x.onnx_shape(ctx.batch_size)
    picks = {
        a: np.arange(int(shape[a] * f)) // int(f)
        for a, f in enumerate(factors)
        if f != 1 and a != x.batch_axis
    }
    if factors[x.batch_axis] != 1:
        raise Unsupported("Upsample along the batch dim")
    return take(ctx, x, picks)


def _leaky_relu(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    slope = float(node.attrs.get("alpha", np.float32(0.01)))  # ONNX attributes are float32
    return Traced(ctx.builder.apply("leaky_relu", x.var, name=node.name, negative_slope=slope), x.batch_axis)


def _split_pieces(ctx: OnnxContext, node: OnnxNode, x: Traced, split: Value = None) -> tuple[Traced, ...]:
    """Sizes from the ``split`` input (opset 13+) or attribute, else equal pieces (the last one smaller)."""
    if isinstance(split, Traced):
        raise Unsupported("Split sizes given by a traced tensor")
    axis = int(node.attrs.get("axis", 0))
    dim = x.onnx_shape(ctx.batch_size)[axis]
    sizes = node.attrs.get("split") if split is None else np.asarray(split).tolist()
    if not sizes:
        pieces = int(node.attrs.get("num_outputs", node.n_outputs))
        step = -(-dim // pieces)
        sizes = [step] * (pieces - 1) + [dim - step * (pieces - 1)]
    starts = np.cumsum([0, *sizes[:-1]])
    return tuple(take(ctx, x, {axis: np.arange(s, s + n)}) for s, n in zip(starts, sizes))


def _handlers() -> dict[str, Handler]:
    return {
        "Add": _binary(GraphBuilder.add),
        "Sub": _binary(GraphBuilder.sub),
        "Mul": _binary(GraphBuilder.mul),
        "Div": _binary(GraphBuilder.div),
        "Pow": _pow,
        "Clip": _clip,
        "Where": _where,
        "Cast": _cast,
        "Identity": _identity,
        "Gelu": _gelu,
        "MatMul": _matmul,
        "Gemm": _gemm,
        "ReduceSum": _reduce_sum,
        "ReduceMean": _reduce_mean,
        "Softmax": _softmax,
        "Split": _split_pieces,
        "Conv": _conv,
        "ConvTranspose": _conv_transpose,
        "BatchNormalization": _batch_norm,
        "Upsample": _upsample,
        "LeakyRelu": _leaky_relu,
        **SHAPE_HANDLERS,
    }


HANDLERS: Mapping[str, Handler] = MappingProxyType(_handlers())

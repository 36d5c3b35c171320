"""Traced ONNX values and the structural ONNX ops (see `gridverify.ir.from_onnx` for the batch convention).

ONNX programs may move the batch dim: ``Transpose(x) -> MatMul(A, .) -> Transpose`` applies ``A`` along an
axis while the batch sits second. A `Traced` therefore keeps the batch dim's position in ONNX's layout, and
the `Var` holds the per-sample values with the remaining axes in ONNX order. Shape arithmetic (``Shape``,
``Reshape`` targets, ``Expand``) sees the batch dim with size `OnnxContext.batch_size`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from gridverify.ir.builder import GraphBuilder, Var

__all__ = [
    "FOLDERS",
    "SHAPE_HANDLERS",
    "OnnxContext",
    "OnnxNode",
    "Traced",
    "Unsupported",
    "Value",
    "align",
    "as_float",
    "fold_slice",
    "move_back",
    "move_last",
    "take",
]


_INT64_MAX = 2**63 - 1


class Unsupported(Exception):
    """Raised by a handler for a node it does not translate; the message says why."""


@dataclass(frozen=True)
class Traced:
    """A traced ONNX tensor: ONNX shape = ``var.shape`` with the batch dim inserted at ``batch_axis``."""

    var: Var
    batch_axis: int = 0

    @property
    def rank(self) -> int:
        """ONNX rank (the batch dim included)."""
        return len(self.var.shape) + 1

    def onnx_shape(self, batch_size: int) -> tuple[int, ...]:
        s = self.var.shape
        return (*s[: self.batch_axis], batch_size, *s[self.batch_axis :])

    def unbatched_axis(self, axis: int) -> int:
        """The axis of ``var`` that is ONNX axis ``axis``; `Unsupported` for the batch dim."""
        if not -self.rank <= int(axis) < self.rank:
            raise ValueError(f"axis {axis} out of range for a tensor of rank {self.rank}")
        a = int(axis) % self.rank
        if a == self.batch_axis:
            raise Unsupported(f"axis {axis} is the batch dim")
        return a if a < self.batch_axis else a - 1


Value = Traced | np.ndarray | None


@dataclass(frozen=True)
class OnnxNode:
    """What a handler needs of an ONNX node: its type, name, decoded attributes and output count."""

    op_type: str
    name: str
    attrs: Mapping[str, Any]
    n_outputs: int


@dataclass(frozen=True)
class OnnxContext:
    """The builder, and the batch dim's size in shape arithmetic (the declared size, or 1 if symbolic).

    Weights with at least ``sparse_min_size`` entries, of which at most ``sparse_density`` are nonzero,
    are stored sparse.
    """

    builder: GraphBuilder
    batch_size: int = 1
    opset: int = 17
    sparse_density: float = 0.1
    sparse_min_size: int = 4096

    def weight(self, w: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(as_float(w))
        sparse = (
            t.numel() >= self.sparse_min_size and int(t.count_nonzero()) <= self.sparse_density * t.numel()
        )
        return t.to_sparse() if sparse else t


def as_float(value: Any) -> np.ndarray:
    """A writable float64 copy (torch warns about read-only arrays)."""
    return np.array(value, dtype=np.float64)


def align(ctx: OnnxContext, values: Sequence[Value]) -> tuple[list[Any], int]:
    """Operands of a broadcasting op in the per-sample layout (Vars and float arrays of equal rank), and
    the batch axis of the result. Batch dims must line up; a constant must not vary along them."""
    traced = [v for v in values if isinstance(v, Traced)]
    rank = max(v.rank if isinstance(v, Traced) else np.ndim(v) for v in values)
    from_end = {t.rank - t.batch_axis for t in traced}
    if len(from_end) != 1:
        raise Unsupported("traced operands whose batch dims do not line up under broadcasting")
    axis = rank - from_end.pop()
    return [_per_sample(ctx.builder, v, rank, axis) for v in values], axis


def _per_sample(b: GraphBuilder, v: Value, rank: int, axis: int) -> Var | np.ndarray:
    if isinstance(v, Traced):
        return b.reshape(v.var, (1,) * (rank - v.rank) + v.var.shape)
    arr = as_float(v).reshape((1,) * (rank - np.ndim(v)) + np.shape(v))
    if arr.shape[axis] != 1:
        raise Unsupported(f"a constant of shape {np.shape(v)} broadcasts against the batch dim")
    return np.squeeze(arr, axis)


def move_last(b: GraphBuilder, var: Var, axis: int) -> tuple[Var, list[int]]:
    """``var`` with its axis ``axis`` moved last, and the permutation used."""
    order = [*(i for i in range(len(var.shape)) if i != axis), axis]
    return b.permute(var, order), order


def move_back(b: GraphBuilder, var: Var, order: Sequence[int]) -> Var:
    return b.permute(var, np.argsort(order).tolist())


def take(ctx: OnnxContext, x: Traced, picks: Mapping[int, np.ndarray]) -> Traced:
    """Entries of ``x`` at 1-D ``indices`` along ONNX axes (the batch axis only as a whole)."""
    start = np.arange(math.prod(x.var.shape)).reshape(x.var.shape)
    index = start
    for axis, indices in picks.items():
        if int(axis) % x.rank == x.batch_axis:
            if not np.array_equal(indices, np.arange(ctx.batch_size)):
                raise Unsupported(f"selecting part of the batch dim (entries {indices[:6].tolist()})")
            continue
        index = np.take(index, indices, axis=x.unbatched_axis(axis))
    if index.shape == start.shape and np.array_equal(index, start):
        return x
    return Traced(ctx.builder.gather(x.var, index), x.batch_axis)


def _constant_input(value: Value, what: str) -> np.ndarray | None:
    if isinstance(value, Traced):
        raise Unsupported(f"{what} given by a traced tensor")
    return None if value is None else np.asarray(value).reshape(-1)


# -- handlers ---------------------------------------------------------------------------------------------
def _transpose(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    perm = [int(p) for p in node.attrs.get("perm") or reversed(range(x.rank))]
    q = perm.index(x.batch_axis)
    dims = [x.unbatched_axis(p) for i, p in enumerate(perm) if i != q]
    return Traced(ctx.builder.permute(x.var, dims), q)


def reshaped(ctx: OnnxContext, x: Traced, target: Sequence[int]) -> Traced:
    """``x`` in ONNX shape ``target``, whose batch dim must keep the elements before and after it."""
    n, source = ctx.batch_size, x.onnx_shape(ctx.batch_size)
    if math.prod(target) != math.prod(source):
        raise ValueError(f"cannot reshape {source} to {tuple(target)}")
    before = math.prod(source[: x.batch_axis])
    fits = [j for j, s in enumerate(target) if s == n and math.prod(target[:j]) == before]
    if not fits:
        raise Unsupported(
            f"reshape of {source} (batch dim {x.batch_axis}) to {tuple(target)} mixes the batch"
        )
    j = x.batch_axis if x.batch_axis in fits else fits[0]
    return Traced(ctx.builder.reshape(x.var, (*target[:j], *target[j + 1 :])), j)


def _reshape(ctx: OnnxContext, node: OnnxNode, x: Traced, shape: Value = None) -> Traced:
    given = _constant_input(shape, "the Reshape target")
    given = node.attrs.get("shape") if given is None else given.tolist()
    source = x.onnx_shape(ctx.batch_size)
    keep = not node.attrs.get("allowzero", 0)
    target = [source[i] if s == 0 and keep else int(s) for i, s in enumerate(given)]
    if -1 in target:
        known = math.prod(s for s in target if s != -1)
        target[target.index(-1)] = math.prod(source) // max(known, 1)
    return reshaped(ctx, x, target)


def _flatten(ctx: OnnxContext, node: OnnxNode, x: Traced) -> Traced:
    source = x.onnx_shape(ctx.batch_size)
    axis = int(node.attrs.get("axis", 1))
    axis = axis + x.rank if axis < 0 else axis
    return reshaped(ctx, x, (math.prod(source[:axis]), math.prod(source[axis:])))


def _squeeze(ctx: OnnxContext, node: OnnxNode, x: Traced, axes: Value = None) -> Traced:
    """Without axes, the unit axes other than the batch dim (which stays even when its size is 1)."""
    given = _constant_input(axes, "the Squeeze axes")
    given = node.attrs.get("axes") if given is None else given.tolist()
    shape = x.onnx_shape(ctx.batch_size)
    if given:
        drop = {int(a) % x.rank for a in given}
    else:
        drop = {a for a, s in enumerate(shape) if s == 1 and a != x.batch_axis}
    units = [x.unbatched_axis(a) for a in sorted(drop)]
    if any(x.var.shape[u] != 1 for u in units):
        raise ValueError(f"Squeeze of axes {sorted(drop)} of shape {shape}, not all of size 1")
    kept = [s for u, s in enumerate(x.var.shape) if u not in units]
    return Traced(ctx.builder.reshape(x.var, kept), x.batch_axis - sum(a < x.batch_axis for a in drop))


def _unsqueeze(ctx: OnnxContext, node: OnnxNode, x: Traced, axes: Value = None) -> Traced:
    given = _constant_input(axes, "the Unsqueeze axes")
    given = node.attrs.get("axes") if given is None else given.tolist()
    rank = x.rank + len(given)
    new = {int(a) % rank for a in given}
    source = iter(x.onnx_shape(ctx.batch_size))
    shape = [1 if i in new else next(source) for i in range(rank)]
    q = [i for i in range(rank) if i not in new][x.batch_axis]
    return Traced(ctx.builder.reshape(x.var, shape[:q] + shape[q + 1 :]), q)


def slice_range(dim: int, start: int, end: int, step: int) -> np.ndarray:
    """Indices ONNX Slice takes along an axis of size ``dim``, as onnxruntime computes them: negative
    ``start`` / ``end`` count from the end, then both are clamped (to ``[0, dim]``, or for a negative step
    to ``[0, dim - 1]`` and ``[-1, dim - 1]``)."""
    if step == 0:
        raise ValueError("Slice step 0")
    if step < 0 and int(end) == _INT64_MAX:  # onnxruntime reads it as "past the first entry"
        end = -_INT64_MAX
    start, end = (int(v) + dim if int(v) < 0 else int(v) for v in (start, end))
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:  # end -1 means "past index 0"
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return np.arange(start, end, step)


def _slice_picks(node: OnnxNode, shape: Sequence[int], bounds: Sequence[Value]) -> dict[int, np.ndarray]:
    """Indices per axis; bounds are inputs ``starts, ends, axes, steps`` from opset 10, attributes before."""
    names = ("starts", "ends", "axes", "steps")
    given = dict(zip(names, (_constant_input(v, f"Slice {k}") for k, v in zip(names, bounds))))
    starts, ends = (node.attrs[k] if given.get(k) is None else given[k] for k in names[:2])
    axes = given.get("axes")
    axes = node.attrs.get("axes", range(len(starts))) if axes is None else axes
    steps = given.get("steps")
    steps = [1] * len(starts) if steps is None else steps
    picks = {}
    for a, s, e, st in zip(axes, starts, ends, steps):
        axis = int(a) % len(shape)
        picks[axis] = slice_range(shape[axis], s, e, int(st))
    return picks


def _slice(ctx: OnnxContext, node: OnnxNode, x: Traced, *bounds: Value) -> Traced:
    return take(ctx, x, _slice_picks(node, x.onnx_shape(ctx.batch_size), bounds))


def fold_slice(node: OnnxNode, data: np.ndarray, *bounds: Value) -> tuple[np.ndarray]:
    """Slice of a constant, clamped as the ONNX spec and onnxruntime do (ONNX's reference implementation
    uses Python slicing, which differs for negative steps from a start before the first entry)."""
    for axis, indices in _slice_picks(node, np.shape(data), bounds).items():
        data = np.take(data, indices, axis=axis)
    return (data,)


def _gather(ctx: OnnxContext, node: OnnxNode, data: Traced, indices: Value) -> Traced:
    if isinstance(indices, Traced):
        raise Unsupported("Gather with traced indices")
    axis = int(node.attrs.get("axis", 0)) % data.rank
    u = data.unbatched_axis(axis)
    dim = data.var.shape[u]
    ind = np.asarray(indices, dtype=np.int64)
    ind = np.where(ind < 0, ind + dim, ind)
    if ind.size and (ind.min() < 0 or ind.max() >= dim):
        raise ValueError(f"Gather indices out of range for an axis of size {dim}")
    index = np.take(np.arange(math.prod(data.var.shape)).reshape(data.var.shape), ind, axis=u)
    batch = data.batch_axis + ind.ndim - 1 if axis < data.batch_axis else data.batch_axis
    return Traced(ctx.builder.gather(data.var, index), batch)


def _concat(ctx: OnnxContext, node: OnnxNode, *xs: Value) -> Traced:
    """Traced inputs share the batch axis; constant inputs must not vary along it."""
    traced = [x for x in xs if isinstance(x, Traced)]
    first = traced[0]
    if any(x.batch_axis != first.batch_axis or x.rank != first.rank for x in traced):
        raise Unsupported("Concat of traced tensors with the batch dim at different axes")
    u = first.unbatched_axis(int(node.attrs["axis"]))
    parts = [_concat_part(ctx, x, first.batch_axis) for x in xs if x is not None]
    parts = [p for p in parts if _shape(p)[u] > 0]
    if all(isinstance(p, Var) for p in parts):
        return Traced(ctx.builder.concat(parts, u), first.batch_axis)
    return Traced(_concat_with_constants(ctx, parts, u), first.batch_axis)


def _shape(v: Var | np.ndarray) -> tuple[int, ...]:
    return v.shape if isinstance(v, Var) else np.shape(v)


def _concat_part(ctx: OnnxContext, x: Value, batch_axis: int) -> Var | np.ndarray:
    if isinstance(x, Traced):
        return x.var.node.kwargs["value"].tensor.numpy() if x.var.is_const else x.var
    arr = as_float(x)
    first = np.take(arr, [0], axis=batch_axis)
    if not np.array_equal(np.broadcast_to(first, arr.shape), arr):
        raise Unsupported(f"a constant of shape {arr.shape} varies along the batch dim")
    return np.squeeze(first, batch_axis)


def _concat_with_constants(ctx: OnnxContext, parts: list[Var | np.ndarray], u: int) -> Var:
    """Concatenate the traced parts, spread them to their places by a 0/1 linear map and add the
    constant parts (the IR's ``concat`` takes traced inputs only)."""
    b = ctx.builder
    sizes = [_shape(p)[u] for p in parts]
    offsets = np.cumsum([0, *sizes[:-1]])
    rows = [np.arange(o, o + s) for p, o, s in zip(parts, offsets, sizes) if isinstance(p, Var)]
    fill = np.concatenate([np.zeros(p.shape) if isinstance(p, Var) else p for p in parts], axis=u)
    if not rows:
        return b.const(fill)
    targets = np.concatenate(rows)
    spread = np.zeros((sum(sizes), targets.size))
    spread[targets, np.arange(targets.size)] = 1.0
    moved, order = move_last(b, b.concat([p for p in parts if isinstance(p, Var)], u), u)
    return b.add(move_back(b, b.linear(moved, ctx.weight(spread)), order), fill)


def _expand(ctx: OnnxContext, node: OnnxNode, x: Traced, shape: Value) -> Traced:
    given = tuple(int(s) for s in _constant_input(shape, "the Expand shape"))
    source = x.onnx_shape(ctx.batch_size)
    out = tuple(np.broadcast_shapes(source, given))
    lead = len(out) - len(source)
    q = x.batch_axis + lead
    if out[q] != ctx.batch_size:
        raise Unsupported(f"Expand of {source} to {given} broadcasts the batch dim")
    var = ctx.builder.reshape(x.var, (1,) * lead + x.var.shape)
    target = out[:q] + out[q + 1 :]
    return Traced(ctx.builder.broadcast_to(var, target) if target != var.shape else var, q)


def _shape_of(ctx: OnnxContext, node: OnnxNode, x: Traced) -> np.ndarray:
    full = np.asarray(x.onnx_shape(ctx.batch_size), dtype=np.int64)
    return full[int(node.attrs.get("start", 0)) : node.attrs.get("end")]


SHAPE_HANDLERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "Transpose": _transpose,
        "Reshape": _reshape,
        "Flatten": _flatten,
        "Squeeze": _squeeze,
        "Unsqueeze": _unsqueeze,
        "Slice": _slice,
        "Gather": _gather,
        "Concat": _concat,
        "Expand": _expand,
        "Shape": _shape_of,
    }
)


def _fold_unsqueeze(node: OnnxNode, data: np.ndarray, axes: Value = None) -> tuple[np.ndarray]:
    """Unsqueeze of a constant, axes from the attribute (opset < 13) or the input (ONNX 1.23's reference
    implementation rejects the attribute form)."""
    given = node.attrs.get("axes") if axes is None else np.asarray(axes).reshape(-1).tolist()
    rank = np.ndim(data) + len(given)
    source = iter(np.shape(data))
    new = {int(a) % rank for a in given}
    shape = [1 if i in new else next(source) for i in range(rank)]
    return (np.reshape(data, shape),)


def _fold_squeeze(node: OnnxNode, data: np.ndarray, axes: Value = None) -> tuple[np.ndarray]:
    given = node.attrs.get("axes") if axes is None else np.asarray(axes).reshape(-1).tolist()
    if not given:
        return (np.squeeze(data),)
    return (np.squeeze(data, axis=tuple(int(a) % np.ndim(data) for a in given)),)


FOLDERS: Mapping[str, Callable[..., tuple[np.ndarray, ...]]] = MappingProxyType(
    {"Slice": fold_slice, "Unsqueeze": _fold_unsqueeze, "Squeeze": _fold_squeeze}
)
"""Constant folding that must not use ONNX's reference implementation, by op type."""

"""The op registry: every primitive of the IR is one `OpDef`, defined in its own module.

An `OpDef` is a record of pure functions over torch tensors. Batched tensors carry a leading batch
dimension that the IR's shapes leave out; parameters (axes, constants) refer to the unbatched shape.

Kinds:
- ``leaf``: graph inputs and constants;
- ``linear``: exact linear maps (``forward(x1..xk) = L(x1..xk) + c``). Bound propagation derives their
  transpose from ``forward`` by a vector-Jacobian product, so a linear op supplies only ``forward``,
  ``interval`` and ``shape`` (and, as a shortcut on hot paths, ``adjoint(a, **params)``: the
  coefficients ``L^T a`` per input for ``a`` of shape ``(b, m, *S_out)``); an affine op names its constant
  ``c`` with ``constant_term(**params)``;
- ``nonlinear``: elementwise (with broadcasting) functions of one or more inputs. They supply ``relax``:
  lower and upper linear functions valid on the input box, optionally parameterised by ``alpha``;
- ``fused``: an op with its own forward and interval that bound propagation replaces by its
  decomposition (``decompose``) into primitives.

Relaxation parameters (``alpha``) are plain tensors of shape ``(P, *box)`` with values in ``[0, 1]``;
``project_alpha`` clamps them there and every value in ``[0, 1]`` gives a sound relaxation.

Outward rounding (certification arithmetic is float64). `register` wraps every op so that this holds in one
place rather than per op:

- ``relax``: each line an op returns is widened by `outward`: the lower offset moves down and the upper
  offset up by ``OUTWARD_ULPS`` ulps of ``|offset| + sum_k |slope_k| * max(|l_k|, |u_k|)`` (the magnitudes
  that rounding in computing the line, and in evaluating it anywhere on the box, can act on), plus the
  smallest normal float (subnormal offsets). Lines an op marks exact (`Relaxation.exact_lower` /
  ``exact_upper``: exactly representable, such as relu's ``alpha*x``) keep their offsets;
- ``interval``: clamped to the op's declared ``value_range`` (the true range of f, so the clamp is sound):
  a square or an exp never gets a negative lower bound from its outward margin, and a downstream
  ``sqrt`` or ``log`` sees an input box inside its domain.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

Shape = tuple[int, ...]
Range = tuple[float, float]

OUTWARD_ULPS = 8
"""Ulps of the line's magnitudes by which `outward` widens every relaxation line that is not exact."""


@dataclass(frozen=True)
class Relaxation:
    """Linear bounds ``sum_i lw[i]*x_i + lb <= f(x) <= sum_i uw[i]*x_i + ub`` on a box, elementwise.

    Each tensor broadcasts against the op's output (batched, possibly with a spec dimension).
    ``exact_lower`` / ``exact_upper`` (a bool, or a bool tensor broadcasting like the lines): entries whose
    line holds in floating point as computed, at every float x of the box, so that `outward` leaves them
    alone (relu's ``alpha*x`` and ``0``, a ``y = x`` piece); everything else is widened.
    """

    lw: tuple[Tensor, ...]
    lb: Tensor
    uw: tuple[Tensor, ...]
    ub: Tensor
    exact_lower: bool | Tensor = False
    exact_upper: bool | Tensor = False


def _line_margin(
    weights: tuple[Tensor, ...], offset: Tensor, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]
) -> Tensor:
    """``OUTWARD_ULPS`` ulps of ``|offset| + sum_k |w_k| max(|l_k|, |u_k|)`` plus the smallest normal float.

    Zero slopes contribute nothing (even against an infinite box end); an infinite magnitude gives an
    infinite margin (an infinite offset stays infinite)."""
    info = torch.finfo(offset.dtype)
    size = offset.abs()
    for w, lo, up in zip(weights, lows, ups):
        term = w.abs() * torch.maximum(lo.abs(), up.abs())
        size = size + torch.where(w == 0, torch.zeros_like(term), term)
    return (OUTWARD_ULPS * info.eps) * size.nan_to_num(nan=math.inf) + info.tiny


def outward(r: Relaxation, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Relaxation:
    """``r`` with every line not marked exact widened by `_line_margin`: lower offsets down, upper up.

    Sound for any line that holds in exact arithmetic up to rounding errors of a few ulps of the
    magnitudes involved (computing its slope and offset from rounded values of f, and evaluating
    ``w*x + b`` anywhere on the box); the resulting lines contain f with no tolerance. Infinite offsets
    stay as they are. The result is marked exact, so a second pass leaves it alone."""
    lb = _widen(r.exact_lower, r.lb, -_line_margin(r.lw, r.lb, lows, ups))
    ub = _widen(r.exact_upper, r.ub, _line_margin(r.uw, r.ub, lows, ups))
    return Relaxation(r.lw, lb, r.uw, ub, exact_lower=True, exact_upper=True)


def _widen(exact: bool | Tensor, offset: Tensor, step: Tensor) -> Tensor:
    if isinstance(exact, bool) and exact:
        return offset
    keep = torch.isinf(offset) if isinstance(exact, bool) else exact | torch.isinf(offset)
    return torch.where(keep, offset, offset + step)


def same_shape(shape: Shape, **params: Any) -> Shape:
    """The shape of an op's one input (the default of `OpDef.shape`)."""
    return tuple(shape)


def _no_alpha(*boxes: Tensor, **params: Any) -> Tensor:
    lower = boxes[0]
    return lower.new_zeros((0, *lower.shape))


def project_unit(alpha: Tensor) -> Tensor:
    """Projection shared by all optimisable ops: every parameter lives in ``[0, 1]``."""
    return alpha.clamp(0.0, 1.0)


@dataclass(frozen=True)
class OpDef:
    """One primitive. See the module docstring for the contract of each field.

    The defaults describe the most common op, an elementwise nonlinear function of one input; an op states
    only what differs."""

    name: str
    forward: Callable[..., Tensor]
    kind: str = "nonlinear"  # "leaf" | "linear" | "nonlinear" | "fused"
    arity: int = 1  # number of node inputs; -1 for variadic
    shape: Callable[..., Shape] = same_shape  # output shape from the input shapes (and params)
    interval: Callable[..., tuple[Tensor, Tensor]] | None = None
    relax: Callable[..., Relaxation] | None = None
    n_alpha: int = 0
    init_alpha: Callable[..., Tensor] = _no_alpha
    project_alpha: Callable[[Tensor], Tensor] = project_unit
    decompose: Callable[..., Any] | None = None
    adjoint: Callable[..., tuple[Tensor, ...]] | None = None
    constant_term: Callable[..., Any] | None = (
        None  # affine ops: params -> the `Const` c in L(x) + c, or None
    )
    abs_linear: Callable[..., Tensor] | None = None  # linear ops: |L|(v_1..v_k) for any v, no constant
    check_domain: Callable[..., None] | None = None
    sympy_heads: tuple[str, ...] = ()
    torch_functions: tuple[Any, ...] = ()
    onnx_types: tuple[str, ...] = ()
    value_range: Range | Callable[..., Range] = (-math.inf, math.inf)  # true range of f (params -> range)
    sample_domain: tuple[float, float] = (-10.0, 10.0)
    sample_params: tuple[dict[str, Any], ...] = ({},)
    # an output neuron combines several neurons of its inputs, or several inputs (linear maps, sums,
    # products): back-substitution (CROWN) can bound it tighter than interval arithmetic on its inputs
    mixes: bool = False
    # piecewise linear with one kink at 0: exact where the input's interval does not contain 0, so a split
    # helps only there and goes at 0 (relu, leaky relu, abs)
    kink_at_zero: bool = False
    # branch and bound may split the neurons of this op's inputs (False: exp, log, sqrt, monotone and
    # convex or concave, whose relaxations a split was not worth the domains)
    splittable: bool = True
    # nondecreasing in every input and 0 where they are: nonnegative inputs give a nonnegative output
    # (add, sum, gather, concat, reshape, permute), so IBP's rounding margin never takes such an output below
    # 0 (`gridverify.bounds.core.node_interval`: a sum of squares under a sqrt)
    keeps_nonnegative: bool = False
    doc: str = field(default="", repr=False)

    @property
    def optimisable(self) -> bool:
        return self.n_alpha > 0

    @property
    def elementwise(self) -> bool:
        return self.kind == "nonlinear"

    def relaxation(
        self, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, **params: Any
    ) -> Relaxation:
        """``relax`` on the box: every nonlinear op has one (`register` checks it)."""
        if self.relax is None:
            raise TypeError(f"op {self.name!r} ({self.kind}) has no relaxation")
        return self.relax(lows, ups, alpha, **params)

    def range_of(self, **params: Any) -> Range:
        """The true range of the op's output for ``params`` (``value_range``)."""
        return self.value_range(**params) if callable(self.value_range) else self.value_range


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to the registry (each name once) and return it."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    if op.kind == "nonlinear" and op.relax is None:
        raise ValueError(f"nonlinear op {op.name!r} needs a relax function")
    if (op.kind == "fused") != (op.decompose is not None):
        raise ValueError(f"op {op.name!r}: a fused op, and only a fused op, has a decompose function")
    if op.kind not in ("leaf", "linear", "nonlinear", "fused"):
        raise ValueError(f"op {op.name!r}: unknown kind {op.kind!r}")
    op = _rounded_outward(op)
    REGISTRY[op.name] = op
    return op


def _rounded_outward(op: OpDef) -> OpDef:
    """``op`` with its relaxation widened by `outward` and its interval clamped to its range."""
    changes: dict[str, Any] = {}
    if op.relax is not None:
        changes["relax"] = _outward_relax(op.relax)
    if op.interval is not None and op.value_range != (-math.inf, math.inf):
        changes["interval"] = _clamped_interval(op, op.interval)
    return dataclasses.replace(op, **changes) if changes else op


def _outward_relax(relax: Callable[..., Relaxation]) -> Callable[..., Relaxation]:
    def rounded(
        lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], alpha: Tensor, **params: Any
    ) -> Relaxation:
        return outward(relax(lows, ups, alpha, **params), lows, ups)

    rounded.__doc__ = relax.__doc__
    return rounded


def _clamped_interval(
    op: OpDef, interval: Callable[..., tuple[Tensor, Tensor]]
) -> Callable[..., tuple[Tensor, Tensor]]:
    def clamped(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], **params: Any) -> tuple[Tensor, Tensor]:
        return clamp_to_range(op, interval(lows, ups, **params), params)

    clamped.__doc__ = interval.__doc__
    return clamped


def clamp_to_range(op: OpDef, bounds: tuple[Tensor, Tensor], params: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """``bounds`` (lower, upper) clamped to the op's true range (sound: every output lies in it)."""
    low, high = op.range_of(**params)
    lower, upper = bounds
    if low == -math.inf and high == math.inf:
        return lower, upper
    return lower.clamp(min=low, max=high), upper.clamp(min=low, max=high)


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}; registered: {sorted(REGISTRY)}") from None


def broadcast_shape(*shapes: Sequence[int]) -> Shape:
    """numpy broadcasting of shapes (plain python: torch.broadcast_shapes is slow to import and call)."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for dims in zip(*[(1,) * (rank - len(s)) + tuple(s) for s in shapes]):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def elementwise_shape(*shapes: Shape, **params: Any) -> Shape:
    """Broadcast shape of inputs of equal rank (equal rank keeps the batch axes aligned)."""
    if len({len(s) for s in shapes}) > 1:
        raise ValueError(f"elementwise inputs need equal rank (pad with leading 1s), got {shapes}")
    return broadcast_shape(*shapes)


class DomainError(ValueError):
    """An op's input box leaves the op's domain (e.g. reciprocal of an interval containing 0)."""


def domain_check(
    name: str, needs: str, outside: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Tensor, Tensor], None]:
    """A check of input boxes ``(lower, upper)``: `DomainError` where ``outside(lower, upper)`` holds, naming
    the op, what it ``needs``, the first offending box and how many there are."""

    def check(lower: Tensor, upper: Tensor) -> None:
        bad = outside(lower, upper)
        if bool(bad.any()):
            idx = tuple(int(i) for i in bad.nonzero()[0])
            box = f"[{float(lower[idx]):.6g}, {float(upper[idx]):.6g}]"
            raise DomainError(
                f"{name} needs {needs}, got {box} at index {idx} ({int(bad.sum())} out of domain)"
            )

    return check


def monotone_interval(
    forward: Callable[..., Tensor], decreasing: tuple[int, ...] = ()
) -> Callable[..., tuple[Tensor, Tensor]]:
    """Interval of a map that is nondecreasing in every input but those numbered in ``decreasing``
    (nonincreasing there): the images of the box's lowest and highest corners."""

    def interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], **params: Any) -> tuple[Tensor, Tensor]:
        if not decreasing:
            return forward(*lows, **params), forward(*ups, **params)
        low = [u if k in decreasing else lo for k, (lo, u) in enumerate(zip(lows, ups))]
        high = [lo if k in decreasing else u for k, (lo, u) in enumerate(zip(lows, ups))]
        return forward(*low, **params), forward(*high, **params)

    return interval


def operator_calls(function: Any, python_operator: Callable[..., Any]) -> tuple[Any, ...]:
    """The torch calls of a Python operator, for ``torch_functions``: the torch function (``torch.add``),
    the operator (``operator.add``, ``x + y``) and the tensor methods (``x.add``, ``x.__add__``)."""
    name = python_operator.__name__
    return (function, python_operator, name, f"__{name}__")


def monotone_linear(
    name: str, forward: Callable[..., Tensor], decreasing: tuple[int, ...] = (), **facts: Any
) -> OpDef:
    """An exact linear op, monotone in every input (add, sub, neg, sum, gather, concat, reshape, permute):
    its interval is the image of two corners of the box (`monotone_interval`)."""
    return OpDef(
        name,
        forward,
        kind="linear",
        interval=monotone_interval(forward, decreasing),
        keeps_nonnegative=not decreasing,
        **facts,
    )


def batch_axis(axis: int) -> int:
    """An axis of the unbatched shape as an axis of the batched tensor."""
    return axis + 1 if axis >= 0 else axis

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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Relaxation:
    """Linear bounds ``sum_i lw[i]*x_i + lb <= f(x) <= sum_i uw[i]*x_i + ub`` on a box, elementwise.

    Each tensor broadcasts against the op's output (batched, possibly with a spec dimension).
    """

    lw: tuple[Tensor, ...]
    lb: Tensor
    uw: tuple[Tensor, ...]
    ub: Tensor


def _no_alpha(*boxes: Tensor, **params: Any) -> Tensor:
    lower = boxes[0]
    return lower.new_zeros((0, *lower.shape))


def project_unit(alpha: Tensor) -> Tensor:
    """Projection shared by all optimisable ops: every parameter lives in ``[0, 1]``."""
    return alpha.clamp(0.0, 1.0)


@dataclass(frozen=True)
class OpDef:
    """One primitive. See the module docstring for the contract of each field."""

    name: str
    kind: str  # "leaf" | "linear" | "nonlinear" | "fused"
    arity: int  # number of node inputs; -1 for variadic
    forward: Callable[..., Tensor]
    shape: Callable[..., Shape]
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
    check_domain: Callable[..., None] | None = None
    sympy_heads: tuple[str, ...] = ()
    torch_functions: tuple[Any, ...] = ()
    onnx_types: tuple[str, ...] = ()
    sample_domain: tuple[float, float] = (-10.0, 10.0)
    sample_params: tuple[dict[str, Any], ...] = ({},)
    doc: str = field(default="", repr=False)

    @property
    def optimisable(self) -> bool:
        return self.n_alpha > 0

    @property
    def elementwise(self) -> bool:
        return self.kind == "nonlinear"


REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    """Add ``op`` to the registry (each name once) and return it."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} registered twice")
    if op.kind == "nonlinear" and op.relax is None:
        raise ValueError(f"nonlinear op {op.name!r} needs a relax function")
    if op.kind not in ("leaf", "linear", "nonlinear", "fused"):
        raise ValueError(f"op {op.name!r}: unknown kind {op.kind!r}")
    REGISTRY[op.name] = op
    return op


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


def same_shape(shape: Shape, **params: Any) -> Shape:
    return tuple(shape)


class DomainError(ValueError):
    """An op's input box leaves the op's domain (e.g. reciprocal of an interval containing 0)."""


def monotone_interval(forward: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """Interval of a map that is nondecreasing in every input: image of the lower and upper corners."""

    def interval(lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], **params: Any) -> tuple[Tensor, Tensor]:
        return forward(*lows, **params), forward(*ups, **params)

    return interval


def batch_axis(axis: int) -> int:
    """An axis of the unbatched shape as an axis of the batched tensor."""
    return axis + 1 if axis >= 0 else axis

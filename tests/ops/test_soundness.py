"""Soundness of every op in `gridverify.ops.REGISTRY`, derived from the registry alone.

For each nonlinear op and each entry of its ``sample_params``: ``interval`` contains ``forward`` and the
``relax`` lines lie below / above ``forward`` at sampled points of sampled boxes, for the default alpha
(``init_alpha``), random alphas, projected out-of-range alphas and the corner alphas 0 and 1. Linear and
fused ops are checked for ``interval`` only. A new op is tested here without editing this file (a
linear op whose parameters cannot be sampled generically fails `test_linear_interval_sound` until it
gives ``sample_params`` or a case in ``LINEAR_CASES``).

Boxes mix zero-width, 1e-9-wide and 1e3-wide boxes, log-uniform widths, and boxes with an endpoint at
or straddling a special point (0, integers, multiples of pi/2, +-sqrt 2, gelu's minimum, the op's
parameters). They live in ``sample_domain``, clipped to it when the domain is one-sided (log, sqrt,
reciprocal); an op that accepts the mirrored (negative) domain, like reciprocal, gets negative boxes too.
Sample points always include the box endpoints (all corners for several inputs) and the special points
inside the box. Tolerance: none for nonlinear ops (relaxations and intervals are rounded outward by the
registry: a line or bound must contain ``f`` as computed in float64, exactly); ``1e-12 * (1 + |f(x)| + |each
interval|)`` for linear ops, whose sums round to nearest.

The same boxes also bound one-op graphs ``y = op(x_1, ..., x_k)`` end to end with CROWN and alpha-CROWN
(`test_crown_and_alpha_crown_sound`): the certified ``[lower, upper]`` of every box must contain ``f`` at
its corners, special points and samples, again with no tolerance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from gridverify.bounds import AlphaConfig, alpha_crown, crown
from gridverify.const import Const
from gridverify.ir import GraphBuilder
from gridverify.ir.graph import Graph
from gridverify.ops import REGISTRY, DomainError, OpDef

DTYPE = torch.float64
REL_SLACK = 0.0  # relaxations and intervals of nonlinear ops: no tolerance at all
LINEAR_SLACK = 1e-12  # linear ops: round-to-nearest sums and products (not rounded outward)
N_POINTS = 24  # sampled points per box, besides corners and special points
DENSE_BOXES = 2000  # boxes per layout in the default dense test
SLOW_BOXES = 20000
MIN_CHECKS_DEFAULT = 20_000
MIN_CHECKS_SLOW = 100_000
GELU_ARGMIN = -0.7517916243  # where gelu' = 0
GRAPH_BOXES = 3000  # boxes per one-op graph in the default end-to-end test
GRAPH_BOXES_SLOW = 100_000
GRAPH_ALPHA = AlphaConfig(steps=6, lr=0.3, patience=6)  # large steps: alphas visit [0, 1] widely

SPECIAL_POINTS: tuple[float, ...] = tuple(
    sorted(
        {0.0, 0.5, -0.5, math.sqrt(2.0), -math.sqrt(2.0), GELU_ARGMIN}
        | {float(k) for k in range(-10, 11)}
        | {k * math.pi / 2 for k in range(-13, 14)}
    )
)


# ----------------------------------------------------------------------------------------------------
# Cases from the registry


def _nonlinear_cases() -> list[Any]:
    return [
        pytest.param(op.name, i, id=f"{op.name}-{i}")
        for op in REGISTRY.values()
        if op.kind == "nonlinear"
        for i in range(len(op.sample_params))
    ]


NONLINEAR_CASES = _nonlinear_cases()


def _case(name: str, index: int) -> tuple[OpDef, dict[str, Any]]:
    op = REGISTRY[name]
    return op, dict(op.sample_params[index])


def _arity(op: OpDef) -> int:
    return 3 if op.arity < 0 else op.arity


# ----------------------------------------------------------------------------------------------------
# Boxes


@dataclass(frozen=True)
class Domain:
    """Where boxes of one op live: ``sample_domain``, one-sided or not, and whether negatives mirror it."""

    low: float
    high: float
    mirror: bool

    @property
    def positive(self) -> bool:
        return self.low >= 0.0

    def specials(self, params: dict[str, Any]) -> Tensor:
        extra = [float(v) for v in params.values() if isinstance(v, (int, float))]
        pts = [p for p in (*SPECIAL_POINTS, *extra, self.low, self.high) if self.low <= p <= self.high]
        return torch.tensor(sorted(set(pts)), dtype=DTYPE)


def domain_of(op: OpDef, params: dict[str, Any]) -> Domain:
    low, high = op.sample_domain
    mirror = False
    if low >= 0.0 and high > 0.0:
        lo, hi = torch.tensor([-high], dtype=DTYPE), torch.tensor([-max(low, 1e-3)], dtype=DTYPE)
        try:
            op.interval((lo,) * _arity(op), (hi,) * _arity(op), **params)  # type: ignore[misc]
            mirror = True
        except DomainError:
            mirror = False
    return Domain(low, high, mirror)


def _log_uniform(shape: tuple[int, ...], lo_exp: float, hi_exp: float, gen: torch.Generator) -> Tensor:
    return 10.0 ** (lo_exp + (hi_exp - lo_exp) * torch.rand(shape, generator=gen, dtype=DTYPE))


def sample_boxes(
    dom: Domain, specials: Tensor, shape: tuple[int, ...], gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Boxes ``[l, u]`` of ``shape``, a mix of the families in the module docstring."""
    rand = torch.rand(shape, generator=gen, dtype=DTYPE)
    family = torch.rand(shape, generator=gen, dtype=DTYPE)
    centre = dom.low + (dom.high - dom.low) * rand
    width = _log_uniform(shape, -9.0, 3.0, gen)
    width = torch.where(family < 0.10, 0.0, width)
    width = torch.where((family >= 0.10) & (family < 0.20), 1e-9, width)
    width = torch.where((family >= 0.20) & (family < 0.30), 1e3, width)
    low = centre - width * torch.rand(shape, generator=gen, dtype=DTYPE)
    up = torch.where(width == 0, low, low + width)
    # Boxes at or around a special point: [c - a, c + b], with a = 0 or b = 0 one time in five each.
    c = specials[torch.randint(len(specials), shape, generator=gen)]
    a, b = _log_uniform(shape, -9.0, 2.0, gen), _log_uniform(shape, -9.0, 2.0, gen)
    a = torch.where(rand < 0.2, 0.0, a)
    b = torch.where(rand > 0.8, 0.0, b)
    around = family >= 0.55
    low, up = torch.where(around, c - a, low), torch.where(around, c + b, up)
    return clip_to_domain(dom, low, up, gen)


def clip_to_domain(dom: Domain, low: Tensor, up: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One-sided domains clip l (and u) to the domain; mirrored ones send half the boxes to -[u, l]."""
    if not dom.positive:
        return low, up
    low = low.clamp(min=dom.low)
    up = torch.maximum(up, low)
    if dom.mirror:
        flip = torch.rand(low.shape, generator=gen) < 0.5
        low, up = torch.where(flip, -up, low), torch.where(flip, -low, up)
    return low, up


def layouts(arity: int, n: int) -> list[tuple[tuple[int, ...], ...]]:
    """Input box shapes (equal rank, as the IR passes them): all equal, an outer product, and a 2-D
    shape whose other inputs broadcast along axis 0."""
    m = max(2, round(n ** (1.0 / max(arity, 1))))
    same = tuple((n,) for _ in range(arity))
    outer = tuple(tuple(m if a == j else 1 for a in range(arity)) for j in range(arity))
    rows = max(1, n // m)
    trailing = ((rows, m), *((1, m) for _ in range(arity - 1)))
    return [same, outer, trailing]


# ----------------------------------------------------------------------------------------------------
# Points


def _unit_points(shape: tuple[int, ...], arity: int, j: int, gen: torch.Generator) -> Tensor:
    """Positions t in [0, 1] along input j, (*shape, K): corners first, then fixed and random positions."""
    corners = [float(c[j]) for c in itertools.product((0.0, 1.0), repeat=arity)]
    fixed = [2.0**-40, 1 - 2.0**-40, 0.25, 0.5, 0.75]
    head = torch.tensor(corners + fixed, dtype=DTYPE).expand(*shape, -1)
    tail = torch.rand((*shape, N_POINTS), generator=gen, dtype=DTYPE)
    return torch.cat([head, tail], dim=-1)


def sample_points(
    lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], specials: Tensor, gen: torch.Generator
) -> tuple[Tensor, ...]:
    """Points of each input box, (*shape_j, K): corners (exact endpoints), interior, special points."""
    arity = len(lows)
    xs = []
    for j, (l, u) in enumerate(zip(lows, ups)):
        t = _unit_points(tuple(l.shape), arity, j, gen)
        l1, u1 = l.unsqueeze(-1), u.unsqueeze(-1)
        x = torch.where(t == 1.0, u1, l1 + t * (u1 - l1))
        inside = specials.expand(*l.shape, -1)
        x = torch.cat([x, inside], dim=-1)
        xs.append(torch.minimum(torch.maximum(x, l1), u1))
    return tuple(xs)


# ----------------------------------------------------------------------------------------------------
# Checks


def _finite_abs(t: Tensor) -> Tensor:
    """|t| where finite, else 0: an infinite term must not widen the slack to infinity."""
    return t.abs().nan_to_num(nan=0.0, posinf=0.0)


def _value_at(t: Tensor, shape: torch.Size, idx: tuple[int, ...]) -> Any:
    """Entry ``idx`` of ``t`` broadcast to ``shape`` (a trailing extra axis, as alpha's, is kept)."""
    if t.dim() == len(shape) + 1:
        return torch.broadcast_to(t, (*shape, t.shape[-1]))[idx].tolist()
    return float(torch.broadcast_to(t, shape)[idx])


def _describe(
    what: str,
    mask: Tensor,
    lows: tuple[Tensor, ...],
    ups: tuple[Tensor, ...],
    xs: tuple[Tensor, ...],
    **extra: Tensor,
) -> str:
    """A failure message naming the first violated check: boxes, point and the values involved."""
    idx = tuple(int(i) for i in mask.nonzero()[0])
    parts = [f"{what} at {int(mask.sum())} of {mask.numel()} checks; first:"]
    for j, (l, u, x) in enumerate(zip(lows, ups, xs)):
        box = [_value_at(b.unsqueeze(-1), mask.shape, idx) for b in (l, u)]
        parts.append(f"input {j}: box [{box[0]!r}, {box[1]!r}], point {_value_at(x, mask.shape, idx)!r}")
    parts += [f"{key} = {_value_at(value, mask.shape, idx)!r}" for key, value in extra.items()]
    return "\n  ".join(parts)


def check_interval(
    op: OpDef,
    params: dict[str, Any],
    lows: tuple[Tensor, ...],
    ups: tuple[Tensor, ...],
    xs: tuple[Tensor, ...],
) -> int:
    """``interval`` contains ``forward`` at the points; returns the number of checks."""
    lo, hi = op.interval(lows, ups, **params)  # type: ignore[misc]
    assert not (lo.isnan().any() or hi.isnan().any()), f"{op.name}{params}: NaN in interval"
    f = op.forward(*xs, **params)
    lo, hi = lo.unsqueeze(-1), hi.unsqueeze(-1)
    bad_lo = ~(lo <= f + REL_SLACK * (1 + _finite_abs(f) + _finite_abs(lo)))
    bad_hi = ~(hi >= f - REL_SLACK * (1 + _finite_abs(f) + _finite_abs(hi)))
    for bad, side, bound in ((bad_lo, "lower", lo), (bad_hi, "upper", hi)):
        if bad.any():
            msg = _describe(
                f"{op.name}{params}: interval {side} bound above f", bad, lows, ups, xs, f=f, bound=bound
            )
            raise AssertionError(msg)
    return 2 * f.numel()


def _line(weights: tuple[Tensor, ...], bias: Tensor, xs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """Value of ``sum_j w_j x_j + b`` at the points and the sum of |terms| (finite ones)."""
    terms = [w.unsqueeze(-1) * x for w, x in zip(weights, xs)]
    b = bias.unsqueeze(-1)
    value = b + sum(terms)  # type: ignore[arg-type]
    size = _finite_abs(b) + sum(_finite_abs(t) for t in terms)  # type: ignore[arg-type]
    return value, size


def check_relax(
    op: OpDef,
    params: dict[str, Any],
    lows: tuple[Tensor, ...],
    ups: tuple[Tensor, ...],
    alpha: Tensor,
    xs: tuple[Tensor, ...],
    label: str,
) -> int:
    """The relaxation for ``alpha`` is NaN-free and bounds ``forward`` at the points; returns #checks."""
    r = op.relax(lows, ups, alpha, **params)  # type: ignore[misc]
    for t in (*r.lw, r.lb, *r.uw, r.ub):
        assert not t.isnan().any(), f"{op.name}{params}: NaN in relaxation ({label} alpha)"
    f = op.forward(*xs, **params)
    low_v, low_size = _line(r.lw, r.lb, xs)
    up_v, up_size = _line(r.uw, r.ub, xs)
    bad_low = ~(low_v <= f + REL_SLACK * (1 + _finite_abs(f) + low_size))
    bad_up = ~(up_v >= f - REL_SLACK * (1 + _finite_abs(f) + up_size))
    a = alpha.movedim(0, -1).unsqueeze(-2)  # (*out, 1, P): broadcasts against the points
    for bad, side, line in ((bad_low, "lower line above f", low_v), (bad_up, "upper line below f", up_v)):
        if bad.any():
            msg = _describe(
                f"{op.name}{params} ({label} alpha): {side}", bad, lows, ups, xs, f=f, line=line, alpha=a
            )
            raise AssertionError(msg)
    return 4 * f.numel()


def alpha_variants(op: OpDef, init: Tensor, gen: torch.Generator) -> Iterator[tuple[str, Tensor]]:
    """init_alpha, random in [0, 1], projected out-of-range values, and every corner of [0, 1]^P."""
    yield "init", init
    yield "random", op.project_alpha(torch.rand(init.shape, generator=gen, dtype=DTYPE))
    yield "projected", op.project_alpha(4 * torch.rand(init.shape, generator=gen, dtype=DTYPE) - 1.5)
    for corner in itertools.product((0.0, 1.0), repeat=op.n_alpha):
        values = torch.tensor(corner, dtype=DTYPE).reshape(-1, *([1] * (init.dim() - 1)))
        yield f"corner {corner}", op.project_alpha(values.expand_as(init).clone())


def check_init_alpha(
    op: OpDef, params: dict[str, Any], lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]
) -> Tensor:
    init = op.init_alpha(lows, ups, **params)
    out_shape = torch.broadcast_shapes(*(t.shape for t in (*lows, *ups)))
    assert init.shape == (op.n_alpha, *out_shape), f"{op.name}: init_alpha shape {tuple(init.shape)}"
    assert init.dtype == DTYPE
    assert bool(((init >= 0) & (init <= 1)).all()), f"{op.name}{params}: init_alpha outside [0, 1]"
    assert torch.equal(op.project_alpha(init), init), (
        f"{op.name}{params}: init_alpha not a fixed point of project_alpha"
    )
    return init


def check_box_batch(
    op: OpDef, params: dict[str, Any], lows: tuple[Tensor, ...], ups: tuple[Tensor, ...], gen: torch.Generator
) -> int:
    """All soundness checks on one batch of boxes; returns the number of sampled checks."""
    specials = domain_of(op, params).specials(params)
    xs = sample_points(lows, ups, specials, gen)
    count = check_interval(op, params, lows, ups, xs)
    init = check_init_alpha(op, params, lows, ups)
    for label, alpha in alpha_variants(op, init, gen):
        count += check_relax(op, params, lows, ups, alpha, xs, label)
    return count


def dense_check(op: OpDef, params: dict[str, Any], n_boxes: int, seed: int) -> int:
    gen = torch.Generator().manual_seed(seed)
    dom = domain_of(op, params)
    specials = dom.specials(params)
    count = 0
    for shapes in layouts(_arity(op), n_boxes):
        boxes = [sample_boxes(dom, specials, shape, gen) for shape in shapes]
        lows, ups = tuple(b[0] for b in boxes), tuple(b[1] for b in boxes)
        count += check_box_batch(op, params, lows, ups, gen)
    return count


# ----------------------------------------------------------------------------------------------------
# Nonlinear ops: dense vectorised sampling


@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
def test_relax_and_interval_sound_dense(name: str, index: int) -> None:
    op, params = _case(name, index)
    count = dense_check(op, params, DENSE_BOXES, seed=1000 + index)
    assert count >= MIN_CHECKS_DEFAULT


@pytest.mark.slow
@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
def test_relax_and_interval_sound_dense_slow(name: str, index: int) -> None:
    op, params = _case(name, index)
    count = sum(dense_check(op, params, SLOW_BOXES, seed=seed) for seed in range(3))
    assert count >= MIN_CHECKS_SLOW


def test_registry_has_nonlinear_cases() -> None:
    names = {p.values[0] for p in NONLINEAR_CASES}
    assert {"relu", "sigmoid", "tanh", "sin", "cos", "exp", "log", "mul", "gelu", "square"} <= names
    for op in REGISTRY.values():
        if op.kind == "nonlinear":
            assert op.relax is not None and op.interval is not None, op.name
            assert op.sample_params, f"{op.name} has no sample_params"


# ----------------------------------------------------------------------------------------------------
# Nonlinear ops end to end: CROWN and alpha-CROWN bounds of y = op(x_1, ..., x_k) over batches of boxes


def one_op_graph(op: OpDef, params: dict[str, Any]) -> Graph:
    """``y = sum(op(x0, ..., x_{k-1}))`` with one input of shape (1,) per argument. The sum makes the op
    an ancestor of the output rather than the output itself, so alpha-CROWN optimises its alphas."""
    b = GraphBuilder()
    xs = [b.input(f"x{j}", (1,)) for j in range(_arity(op))]
    return b.build(b.sum(b.apply(op.name, *xs, **params)))


def check_graph_bounds(op: OpDef, params: dict[str, Any], n_boxes: int, seed: int) -> int:
    """CROWN and alpha-CROWN over ``n_boxes`` boxes (batch B = n_boxes) contain f at the sample points
    (corners, special points, random points) with no tolerance; returns the number of checks."""
    gen = torch.Generator().manual_seed(seed)
    dom = domain_of(op, params)
    specials = dom.specials(params)
    boxes = [sample_boxes(dom, specials, (n_boxes, 1), gen) for _ in range(_arity(op))]
    lows, ups = tuple(b[0] for b in boxes), tuple(b[1] for b in boxes)
    graph = one_op_graph(op, params)
    box = {f"x{j}": (lo, up) for j, (lo, up) in enumerate(zip(lows, ups))}
    xs = sample_points(lows, ups, specials, gen)
    f = op.forward(*xs, **params)  # (B, 1, K); the bounds are (B, 1)
    count = 0
    for method, result in (
        ("crown", crown(graph, box)),
        ("alpha-crown", alpha_crown(graph, box, config=GRAPH_ALPHA)),
    ):
        lower, upper = result.lower.unsqueeze(-1), result.upper.unsqueeze(-1)
        assert not (lower.isnan().any() or upper.isnan().any()), f"{op.name}{params}: NaN {method} bound"
        for bad, side in ((~(lower <= f), "lower bound above f"), (~(upper >= f), "upper bound below f")):
            if bad.any():
                msg = _describe(
                    f"{op.name}{params} {method}: {side}", bad, lows, ups, xs, f=f, lower=lower, upper=upper
                )
                raise AssertionError(msg)
        count += 2 * f.numel()
    return count


@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
def test_crown_and_alpha_crown_sound(name: str, index: int) -> None:
    op, params = _case(name, index)
    assert check_graph_bounds(op, params, GRAPH_BOXES, seed=2000 + index) >= 2 * 2 * GRAPH_BOXES


@pytest.mark.slow
@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
def test_crown_and_alpha_crown_sound_slow(name: str, index: int) -> None:
    op, params = _case(name, index)
    assert check_graph_bounds(op, params, GRAPH_BOXES_SLOW, seed=3000 + index) >= 2 * 2 * GRAPH_BOXES_SLOW


# ----------------------------------------------------------------------------------------------------
# Nonlinear ops: hypothesis


@st.composite
def box_strategy(draw: st.DrawFn, dom: Domain, specials: tuple[float, ...]) -> tuple[float, float]:
    """One box: centre and width, or an endpoint at / around a special point."""
    width = draw(st.one_of(st.sampled_from([0.0, 1e-9, 1e3]), st.floats(-9.0, 3.0).map(lambda e: 10.0**e)))
    if draw(st.booleans()):
        c = draw(st.sampled_from(specials))
        share = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
        low, up = c - share * width, c + (1 - share) * width
    else:
        centre = draw(st.floats(dom.low, dom.high))
        low, up = centre - 0.5 * width, centre + 0.5 * width
    if dom.positive:
        low = max(low, dom.low)
        up = max(up, low)
        if dom.mirror and draw(st.booleans()):
            low, up = -up, -low
    return low, up


def _alpha_strategy(n_alpha: int) -> st.SearchStrategy[list[float]]:
    value = st.sampled_from([0.0, 1.0]) | st.floats(-0.5, 1.5)
    return st.lists(value, min_size=n_alpha, max_size=n_alpha)


@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_relax_and_interval_sound_hypothesis(name: str, index: int, data: st.DataObject) -> None:
    op, params = _case(name, index)
    dom = domain_of(op, params)
    specials = tuple(dom.specials(params).tolist())
    n_boxes = data.draw(st.integers(1, 6), label="boxes per input")
    boxes = [
        data.draw(st.lists(box_strategy(dom, specials), min_size=n_boxes, max_size=n_boxes))
        for _ in range(op.arity)
    ]
    lows = tuple(torch.tensor([b[0] for b in bs], dtype=DTYPE) for bs in boxes)
    ups = tuple(torch.tensor([b[1] for b in bs], dtype=DTYPE) for bs in boxes)
    alpha = torch.tensor(data.draw(_alpha_strategy(op.n_alpha), label="alpha"), dtype=DTYPE)
    gen = torch.Generator().manual_seed(0)
    check_box_batch(op, params, lows, ups, gen)
    drawn = op.project_alpha(alpha.reshape(-1, 1).expand(op.n_alpha, n_boxes).clone())
    xs = sample_points(lows, ups, torch.tensor(specials, dtype=DTYPE), gen)
    check_relax(op, params, lows, ups, drawn, xs, "drawn")


# ----------------------------------------------------------------------------------------------------
# Far-out boxes: overflow must give infinite (never NaN, never too small finite) bounds


@pytest.mark.parametrize(("name", "index"), NONLINEAR_CASES)
def test_far_boxes_sound_and_nan_free(name: str, index: int) -> None:
    """Boxes anywhere in [-1e3, 1e3] (positive half for one-sided domains): exp overflows there."""
    op, params = _case(name, index)
    dom = domain_of(op, params)
    gen = torch.Generator().manual_seed(7)
    shape = (400,)
    centre = -1e3 + 2e3 * torch.rand(shape, generator=gen, dtype=DTYPE)
    if dom.positive:
        centre = centre.abs().clamp(min=dom.low)
    width = _log_uniform(shape, -9.0, 1.0, gen)
    lows = (centre,) * _arity(op)
    ups = (centre + width,) * _arity(op)
    check_box_batch(op, params, lows, ups, gen)


def test_exp_overflow_bounds_stay_infinite() -> None:
    """Regression: exp on boxes beyond ~709.78 gave a NaN interval lower bound (inf - inf in the outward
    margin) and an upper line of 1.797e308 < exp(u) (nan_to_num's default posinf)."""
    op = REGISTRY["exp"]
    low = torch.tensor([720.0, 705.0, 709.0, 800.0], dtype=DTYPE)
    up = torch.tensor([721.0, 710.0, 709.9, 800.0], dtype=DTYPE)
    lo, hi = op.interval((low,), (up,))  # type: ignore[misc]
    assert not lo.isnan().any()
    assert bool((hi == math.inf).all())
    assert float(lo[0]) == torch.finfo(DTYPE).max  # exp(720) > the largest float: still a lower bound
    for alpha in (
        op.init_alpha((low,), (up,)),
        torch.zeros(2, 4, dtype=DTYPE),
        torch.ones(2, 4, dtype=DTYPE),
    ):
        r = op.relax((low,), (up,), alpha)  # type: ignore[misc]
        assert bool((r.uw[0] * up + r.ub == math.inf).all())
        assert not any(t.isnan().any() for t in (*r.lw, r.lb, *r.uw, r.ub))


@settings(max_examples=200, deadline=None)
@given(
    slope=st.sampled_from([0.01, 0.1, 0.2, 0.3, 1.0 / 3.0, 1.7, -0.3]),
    ends=st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False), min_size=2, max_size=2),
)
def test_leaky_relu_interval_holds_in_exact_arithmetic(slope: float, ends: list[float]) -> None:
    """The interval of ``leaky_relu`` contains the exact value ``slope * x`` (rationals) at both ends of the
    box, not only the rounded one that `check_box_batch` compares with: its ends are rounded outward
    (regression: ``0.01 * x`` rounded to nearest could exceed the true product at the lower end)."""
    from fractions import Fraction

    low, up = sorted(ends)
    op = REGISTRY["leaky_relu"]
    lo, hi = op.interval(
        (torch.tensor([low], dtype=DTYPE),), (torch.tensor([up], dtype=DTYPE),), negative_slope=slope
    )  # type: ignore[misc]
    for x in (low, up):
        exact = Fraction(x) if x >= 0 else Fraction(slope) * Fraction(x)
        assert Fraction(float(lo[0])) <= exact <= Fraction(float(hi[0])), (
            x,
            slope,
            float(lo[0]),
            float(hi[0]),
        )


# ----------------------------------------------------------------------------------------------------
# Domain errors


@pytest.mark.parametrize(
    ("name", "low", "up"),
    [
        ("reciprocal", -1.0, 1.0),
        ("reciprocal", 0.0, 1.0),
        ("reciprocal", -1.0, 0.0),
        ("reciprocal", 0.0, 0.0),
        ("log", 0.0, 1.0),
        ("log", -2.0, 3.0),
        ("log", -2.0, -1.0),
        ("sqrt", -1e-9, 1.0),
        ("sqrt", -3.0, -1.0),
    ],
)
def test_domain_error_names_the_op(name: str, low: float, up: float) -> None:
    op = REGISTRY[name]
    lows = (torch.tensor([1.0, low, 2.0], dtype=DTYPE),)
    ups = (torch.tensor([2.0, up, 3.0], dtype=DTYPE),)
    alpha = torch.full((op.n_alpha, 3), 0.5, dtype=DTYPE)
    calls = [
        lambda: op.interval(lows, ups),  # type: ignore[misc]
        lambda: op.relax(lows, ups, alpha),  # type: ignore[misc]
        lambda: op.init_alpha(lows, ups),
    ]
    if op.check_domain is not None:
        calls.append(lambda: op.check_domain(lows, ups))  # type: ignore[misc]
    for call in calls:
        with pytest.raises(DomainError, match=name):
            call()


@pytest.mark.parametrize(
    ("name", "low", "up"), [("sqrt", 0.0, 1.0), ("reciprocal", -2.0, -1.0), ("log", 1e-300, 1.0)]
)
def test_domain_boundary_accepted(name: str, low: float, up: float) -> None:
    op = REGISTRY[name]
    lows, ups = (torch.tensor([low], dtype=DTYPE),), (torch.tensor([up], dtype=DTYPE),)
    lo, hi = op.interval(lows, ups)  # type: ignore[misc]
    assert not (lo.isnan().any() or hi.isnan().any())


# ----------------------------------------------------------------------------------------------------
# Linear and fused ops: interval contains forward (batched: leading batch dimension)


@dataclass(frozen=True)
class LinearCase:
    """Unbatched input shapes and parameters of a linear / fused op."""

    shapes: tuple[tuple[int, ...], ...]
    params: dict[str, Any]


def _weights(seed: int, *shape: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)


LINEAR_CASES: dict[str, list[LinearCase]] = {
    "add": [LinearCase(((3, 4), (3, 4)), {}), LinearCase(((3, 4), (1, 4)), {})],
    "sub": [LinearCase(((3, 4), (3, 4)), {}), LinearCase(((3, 4), (3, 1)), {})],
    "neg": [LinearCase(((3, 4),), {})],
    "linear": [
        LinearCase(((5,),), {"weight": Const(_weights(1, 3, 5)), "bias": Const(_weights(2, 3))}),
        LinearCase(((2, 5),), {"weight": Const(_weights(3, 4, 5))}),
        LinearCase(((5,),), {"weight": Const((_weights(4, 3, 5) * (_weights(5, 3, 5) > 0.5)).to_sparse())}),
    ],
    "scale": [
        LinearCase(((3, 4),), {"factor": Const(_weights(6, 4))}),
        LinearCase(((3, 4),), {"factor": Const(-2.5)}),
    ],
    "gather": [LinearCase(((3, 4),), {"index": Const(torch.tensor([[0, 5, 11], [3, 3, 0]]))})],
    "concat": [LinearCase(((2, 3), (2, 1), (2, 2)), {"axis": 1}), LinearCase(((2, 3), (1, 3)), {"axis": -2})],
    "reshape": [LinearCase(((3, 4),), {"shape": (2, 6)})],
    "permute": [LinearCase(((2, 3, 4),), {"dims": (2, 0, 1)})],
    "sum": [LinearCase(((3, 4),), {"axes": (1,)}), LinearCase(((3, 4),), {"axes": (0, -1)})],
    "matmul": [LinearCase(((2, 3), (3, 4)), {}), LinearCase(((5, 2, 3), (5, 3, 2)), {})],
}


def _linear_ops() -> list[Any]:
    return [pytest.param(op.name, id=op.name) for op in REGISTRY.values() if op.kind in ("linear", "fused")]


def linear_cases_of(op: OpDef) -> list[LinearCase]:
    """The table's cases, else one case per ``sample_params`` entry on inputs of shape (3, 4)."""
    if op.name in LINEAR_CASES:
        return LINEAR_CASES[op.name]
    return [LinearCase(((3, 4),) * _arity(op), dict(p)) for p in op.sample_params]


def _linear_points(low: Tensor, up: Tensor, n_points: int, gen: torch.Generator) -> Tensor:
    """(B, P, *shape): the lower and upper corners, then per-entry mixes of endpoints and interior."""
    shape = (low.shape[0], n_points, *low.shape[1:])
    t = torch.rand(shape, generator=gen, dtype=DTYPE)
    pick = torch.rand(shape, generator=gen)
    t = torch.where(pick < 0.3, 0.0, torch.where(pick > 0.7, 1.0, t))
    t[:, 0], t[:, 1] = 0.0, 1.0
    l1, u1 = low.unsqueeze(1), up.unsqueeze(1)
    return torch.where(t == 1.0, u1, l1 + t * (u1 - l1)).clamp(min=l1, max=u1)


@pytest.mark.parametrize("name", _linear_ops())
def test_linear_interval_sound(name: str) -> None:
    op = REGISTRY[name]
    gen = torch.Generator().manual_seed(11)
    dom = Domain(*op.sample_domain, mirror=False)
    specials = dom.specials({})
    n_boxes, n_points, count = 400, 16, 0
    for case in linear_cases_of(op):
        boxes = [sample_boxes(dom, specials, (n_boxes, *s), gen) for s in case.shapes]
        lows, ups = tuple(b[0] for b in boxes), tuple(b[1] for b in boxes)
        try:
            lo, hi = op.interval(lows, ups, **case.params)  # type: ignore[misc]
        except (TypeError, ValueError) as err:
            pytest.fail(f"linear op {name!r}: give it sample_params or a case in LINEAR_CASES ({err})")
        xs = [_linear_points(l, u, n_points, gen) for l, u in zip(lows, ups)]
        f = op.forward(*(x.flatten(0, 1) for x in xs), **case.params)
        f = f.reshape(n_boxes, n_points, *f.shape[1:])
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
        slack = LINEAR_SLACK * (1 + f.abs() + lo.abs() + hi.abs())
        assert lo.shape[2:] == f.shape[2:] and hi.shape == lo.shape
        assert bool((lo <= f + slack).all()), f"{name} {case}: interval lower bound above forward"
        assert bool((hi >= f - slack).all()), f"{name} {case}: interval upper bound below forward"
        count += 2 * f.numel()
    assert count >= MIN_CHECKS_DEFAULT

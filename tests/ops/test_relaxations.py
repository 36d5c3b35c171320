"""Tightness and structure of op relaxations, with hand-computed numbers.

Two kinds of check:

- exact numbers on tiny boxes, worked out by hand in each test (chords, tangents, McCormick planes,
  interval images). Lines at a fixed alpha are compared to 1e-12; default lines come from
  ``init_alpha``, whose alpha is found by bisection (about 2**-30 of the slope range), so they are
  compared to ``TOL_DEFAULT``;
- a registry-wide tightness property: every relaxation line of a continuous op touches ``f`` on the
  box (``min f - lower`` and ``min upper - f`` are ~0), for the default and for random alphas. A line
  that is sound but loose by a constant fails it (see `test_touch_check_detects_a_loose_line`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

from gridverify.const import Const
from gridverify.ops import REGISTRY, OpDef, Relaxation

DTYPE = torch.float64
TOL_EXACT = 1e-12
TOL_DEFAULT = 1e-7
TOUCH_TOL = 1e-9
GELU_ARGMIN = -0.7517915246935645  # root of gelu'(x) = Phi(x) + x phi(x) (Newton, float64)
GELU_MIN = -0.16997120747990369  # gelu(GELU_ARGMIN)
NOT_TOUCHING = {"floor": "discontinuous: x - 1 < floor(x) is never attained, only approached"}


def box(*values: float) -> tuple[Tensor, ...]:
    return tuple(torch.tensor([v], dtype=DTYPE) for v in values)


def relax_at(name: str, low: float, up: float, alpha: list[float] | None = None, **params: Any) -> Relaxation:
    """Relaxation of a unary op on ``[low, up]`` for ``alpha`` (default: ``init_alpha``)."""
    op = REGISTRY[name]
    lows, ups = box(low), box(up)
    a = (
        op.init_alpha(lows, ups, **params)
        if alpha is None
        else torch.tensor(alpha, dtype=DTYPE).reshape(-1, 1)
    )
    return op.relax(lows, ups, a, **params)  # type: ignore[misc]


def lines(r: Relaxation) -> tuple[float, float, float, float]:
    """(lower slope, lower intercept, upper slope, upper intercept) of a unary relaxation."""
    return float(r.lw[0]), float(r.lb), float(r.uw[0]), float(r.ub)


def assert_lines(r: Relaxation, expected: tuple[float, float, float, float], tol: float) -> None:
    got = lines(r)
    assert got == pytest.approx(expected, abs=tol), f"got {got}, expected {expected}"


def f_of(name: str, x: float | Tensor, **params: Any) -> float:
    return float(REGISTRY[name].forward(torch.as_tensor(x, dtype=DTYPE), **params))


def dfdx(name: str, x: float, **params: Any) -> float:
    t = torch.tensor(x, dtype=DTYPE, requires_grad=True)
    REGISTRY[name].forward(t, **params).backward()
    return float(t.grad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Piecewise-linear ops


def test_relu_unstable_box() -> None:
    # [-1, 3]: chord through (-1, 0) and (3, 3): slope 3/4, intercept 3/4; lower alpha*x.
    for alpha in (0.0, 0.3, 1.0):
        assert_lines(relu_r := relax_at("relu", -1.0, 3.0, [alpha]), (alpha, 0.0, 0.75, 0.75), TOL_EXACT)
        assert relu_r.lb.item() == 0.0
    assert_lines(relax_at("relu", -1.0, 3.0), (1.0, 0.0, 0.75, 0.75), TOL_EXACT)  # u > -l: slope 1
    assert_lines(relax_at("relu", -3.0, 1.0), (0.0, 0.0, 0.25, 0.75), TOL_EXACT)  # u < -l: slope 0


def test_relu_stable_boxes_are_exact() -> None:
    for alpha in (0.0, 1.0):
        assert_lines(relax_at("relu", 1.0, 2.0, [alpha]), (1.0, 0.0, 1.0, 0.0), 0.0)
        assert_lines(relax_at("relu", -2.0, -1.0, [alpha]), (0.0, 0.0, 0.0, 0.0), 0.0)
        assert_lines(relax_at("relu", 0.0, 2.0, [alpha]), (1.0, 0.0, 1.0, 0.0), 0.0)


def test_abs_straddling_box() -> None:
    # [-1, 3]: chord through (-1, 1) and (3, 3): slope 1/2, intercept 3/2; lower (2 alpha - 1) x.
    for alpha in (0.0, 0.25, 1.0):
        assert_lines(relax_at("abs", -1.0, 3.0, [alpha]), (2 * alpha - 1, 0.0, 0.5, 1.5), TOL_EXACT)
    assert_lines(relax_at("abs", -1.0, 3.0), (1.0, 0.0, 0.5, 1.5), TOL_EXACT)
    assert_lines(relax_at("abs", -3.0, -1.0, [0.7]), (-1.0, 0.0, -1.0, 0.0), 0.0)


def test_clip_lines() -> None:
    # clip(x, -1, 2) on [-2, 3]: upper through (2, 2) with slope alpha_U * (2 - (-1)) / (2 - (-2)) = 3/4
    # alpha_U, lower through (-1, -1) with slope alpha_L * (2 - (-1)) / (3 - (-1)) = 3/4 alpha_L.
    p = {"lo": -1.0, "hi": 2.0}
    assert_lines(relax_at("clip", -2.0, 3.0, [1.0, 1.0], **p), (0.75, -0.25, 0.75, 0.5), TOL_EXACT)
    assert_lines(relax_at("clip", -2.0, 3.0, [0.0, 0.0], **p), (0.0, -1.0, 0.0, 2.0), TOL_EXACT)
    assert_lines(relax_at("clip", -2.0, 3.0, [0.5, 0.5], **p), (0.375, -0.625, 0.375, 1.25), TOL_EXACT)
    assert_lines(relax_at("clip", -2.0, 3.0, **p), (0.75, -0.25, 0.75, 0.5), TOL_EXACT)  # midpoint 0.5
    assert_lines(relax_at("clip", 0.0, 1.0, **p), (1.0, 0.0, 1.0, 0.0), TOL_EXACT)  # identity inside
    assert_lines(relax_at("clip", 3.0, 4.0, **p), (0.0, 2.0, 0.0, 2.0), TOL_EXACT)  # saturated
    lo, hi = REGISTRY["clip"].interval(box(-2.0), box(3.0), **p)  # type: ignore[misc]
    assert (float(lo), float(hi)) == (-1.0, 2.0)


def test_floor_lines() -> None:
    # [0.5, 2.5], slope 1: lower max(-1, floor(0.5) - 2.5) = -1, upper min(0, floor(2.5) - 0.5) = 0.
    assert_lines(relax_at("floor", 0.5, 2.5), (1.0, -1.0, 1.0, 0.0), TOL_EXACT)
    # slope 0: the interval's constants floor(0.5) = 0 and floor(2.5) = 2.
    assert_lines(relax_at("floor", 0.5, 2.5, [0.0, 0.0]), (0.0, 0.0, 0.0, 2.0), TOL_EXACT)
    # slope 1/2: lower max(0.5*0.5 - 1, 0 - 1.25) = -0.75, upper min(0.5*2.5, 2 - 0.25) = 1.25.
    assert_lines(relax_at("floor", 0.5, 2.5, [0.5, 0.5]), (0.5, -0.75, 0.5, 1.25), TOL_EXACT)
    assert_lines(relax_at("floor", 0.2, 0.7), (0.0, 0.0, 0.0, 0.0), 0.0)  # narrow box: exact
    assert_lines(relax_at("floor", -1.5, -0.5), (1.0, -1.0, 1.0, 0.0), TOL_EXACT)


# ----------------------------------------------------------------------------------------------------
# Convex and concave smooth ops: chord on one side, tangent at the midpoint on the other


def test_square_lines() -> None:
    # [-1, 2]: chord (l + u) x - l u = x + 2; tangent at the midpoint 1/2: x - 1/4.
    assert_lines(relax_at("square", -1.0, 2.0), (1.0, -0.25, 1.0, 2.0), TOL_DEFAULT)
    # alpha maps onto slopes [2l, 2u] = [-2, 4]. alpha 0: lower is the tangent at -1 (-2x - 1), upper
    # the slope -2 line through (2, 4) (-2x + 8); alpha 1: tangent at 2 (4x - 4) and the line through
    # (-1, 1) (4x + 5).
    assert_lines(relax_at("square", -1.0, 2.0, [0.0, 0.0]), (-2.0, -1.0, -2.0, 8.0), TOL_EXACT)
    assert_lines(relax_at("square", -1.0, 2.0, [1.0, 1.0]), (4.0, -4.0, 4.0, 5.0), TOL_EXACT)
    # slope 0 (alpha 1/3): y >= 0, and the upper line of slope 0 is the interval's max 4.
    assert_lines(relax_at("square", -1.0, 2.0, [1 / 3, 1 / 3]), (0.0, 0.0, 0.0, 4.0), TOL_EXACT)


def test_exp_lines() -> None:
    # [0, 1]: chord 1 + (e - 1) x; tangent at 1/2: e^0.5 x + e^0.5 / 2.
    e, s = math.e, math.exp(0.5)
    assert_lines(relax_at("exp", 0.0, 1.0), (s, 0.5 * s, e - 1, 1.0), TOL_DEFAULT)


def test_log_lines() -> None:
    # [1, e]: chord (x - 1) / (e - 1); tangent at m = (1 + e) / 2: x / m + log(m) - 1.
    e, m = math.e, (1 + math.e) / 2
    assert_lines(relax_at("log", 1.0, e), (1 / (e - 1), -1 / (e - 1), 1 / m, math.log(m) - 1), TOL_DEFAULT)


def test_sqrt_lines() -> None:
    # [1, 4]: chord (x + 2) / 3; tangent at 5/2: x / (2 sqrt 2.5) + sqrt(2.5) / 2.
    r = math.sqrt(2.5)
    assert_lines(relax_at("sqrt", 1.0, 4.0), (1 / 3, 2 / 3, 1 / (2 * r), r / 2), TOL_DEFAULT)


def test_sqrt_lines_at_zero() -> None:
    # [0, 4]: chord x / 2; tangent at 2: x / (2 sqrt 2) + sqrt(2) / 2. (f'(0) = inf: the slope range
    # must stay finite and meaningful for the default alpha to reach the chord.)
    r = math.sqrt(2.0)
    assert_lines(relax_at("sqrt", 0.0, 4.0), (0.5, 0.0, 1 / (2 * r), r / 2), TOL_DEFAULT)


def test_sqrt_lines_at_zero_touch_for_middle_alpha() -> None:
    """Regression: with f'(0) = inf capped at 1e30 and alpha mapped linearly onto [f'(u), 1e30], alpha 1/2
    gave slope 5e29 and an upper line 7e15 above f at 0 (the outward margin scales with |slope|)."""
    op = REGISTRY["sqrt"]
    low, up = torch.tensor([0.0], dtype=DTYPE), torch.tensor([4.0], dtype=DTYPE)
    gap_lo, gap_up, tol = touch_gaps(op, {}, low, up, torch.full((2, 1), 0.5, dtype=DTYPE))
    assert float(gap_lo.abs()) <= float(tol) and float(gap_up.abs()) <= float(tol)


def test_reciprocal_lines() -> None:
    # [1, 2]: chord (3 - x) / 2; tangent at 3/2: -4x/9 + 4/3. On [-2, -1] the mirror image.
    assert_lines(relax_at("reciprocal", 1.0, 2.0), (-4 / 9, 4 / 3, -0.5, 1.5), TOL_DEFAULT)
    assert_lines(relax_at("reciprocal", -2.0, -1.0), (-0.5, -1.5, -4 / 9, -4 / 3), TOL_DEFAULT)


@pytest.mark.parametrize("exponent", [2, 4])
def test_even_power_lines(exponent: int) -> None:
    # x^n on [-1, 1]: chord y = 1, tangent at 0: y = 0.
    assert_lines(relax_at("power", -1.0, 1.0, exponent=exponent), (0.0, 0.0, 0.0, 1.0), TOL_DEFAULT)


def test_cubic_on_convex_side() -> None:
    # x^3 on [1, 2]: chord 7x - 6; tangent at 3/2: 27/4 x - 27/4.
    assert_lines(relax_at("power", 1.0, 2.0, exponent=3), (6.75, -6.75, 7.0, -6.0), TOL_DEFAULT)


# ----------------------------------------------------------------------------------------------------
# S-shaped ops: sigmoid, tanh, sin near an inflection, gelu


def _tangent_at(name: str, t: float) -> tuple[float, float]:
    slope = dfdx(name, t)
    return slope, f_of(name, t) - slope * t


def test_sigmoid_convex_box() -> None:
    # [-4, -1] (convex): upper is the chord, lower the tangent at the midpoint -5/2.
    s = torch.sigmoid(torch.tensor([-4.0, -1.0], dtype=DTYPE)).tolist()
    chord = (s[1] - s[0]) / 3
    slope, intercept = _tangent_at("sigmoid", -2.5)
    assert_lines(relax_at("sigmoid", -4.0, -1.0), (slope, intercept, chord, s[1] + chord), TOL_DEFAULT)


def test_sigmoid_concave_box() -> None:
    # [1, 4] (concave): the mirror image, lower chord and upper tangent at 5/2.
    s = torch.sigmoid(torch.tensor([1.0, 4.0], dtype=DTYPE)).tolist()
    chord = (s[1] - s[0]) / 3
    slope, intercept = _tangent_at("sigmoid", 2.5)
    assert_lines(relax_at("sigmoid", 1.0, 4.0), (chord, s[0] - chord, slope, intercept), TOL_DEFAULT)


def _touch_point(f: Callable[[Tensor], Tensor], low: float, up: float) -> tuple[float, float]:
    """(min, argmin) of f on [low, up] on a fine grid refined around its minimum."""
    lo, hi = low, up
    for _ in range(4):
        x = torch.linspace(lo, hi, 4001, dtype=DTYPE)
        v = f(x)
        j = int(v.argmin())
        step = (hi - lo) / 4000
        lo, hi = max(low, float(x[j]) - step), min(up, float(x[j]) + step)
    return float(v[j]), float(x[j])


@pytest.mark.parametrize(
    ("name", "low", "up"), [("sigmoid", -5.0, 5.0), ("tanh", -5.0, 5.0), ("sin", -1.5, 1.5)]
)
def test_s_shaped_box_across_the_inflection(name: str, low: float, up: float) -> None:
    """Default lower: the tangent through (u, f(u)), touching f left of 0; upper: the mirror image."""
    op = REGISTRY[name]
    lw, lb, uw, ub = lines(relax_at(name, low, up))
    assert lw * up + lb == pytest.approx(f_of(name, up), abs=TOL_DEFAULT)
    assert uw * low + ub == pytest.approx(f_of(name, low), abs=TOL_DEFAULT)
    gap, at = _touch_point(lambda x: op.forward(x) - (lw * x + lb), low, 0.0)
    assert abs(gap) < TOUCH_TOL and low < at < 0
    assert dfdx(name, at) == pytest.approx(lw, abs=1e-6)  # a tangent there
    gap, at = _touch_point(lambda x: (uw * x + ub) - op.forward(x), 0.0, up)
    assert abs(gap) < TOUCH_TOL and 0 < at < up
    assert dfdx(name, at) == pytest.approx(uw, abs=1e-6)


def test_sigmoid_symmetric_box_lines_are_mirror_images() -> None:
    lw, lb, uw, ub = lines(relax_at("sigmoid", -5.0, 5.0))
    assert uw == pytest.approx(lw, abs=TOL_DEFAULT)
    assert ub == pytest.approx(1.0 - lb, abs=TOL_DEFAULT)  # sigmoid(-x) = 1 - sigmoid(x)


def test_gelu_interval_and_lines() -> None:
    lo, hi = REGISTRY["gelu"].interval(box(-3.0), box(3.0))  # type: ignore[misc]
    assert float(lo) == pytest.approx(GELU_MIN, abs=1e-12)
    assert f_of("gelu", GELU_ARGMIN) == pytest.approx(GELU_MIN, abs=1e-12)
    assert dfdx("gelu", GELU_ARGMIN) == pytest.approx(0.0, abs=1e-9)
    assert float(hi) == pytest.approx(3 * 0.5 * (1 + math.erf(3 / math.sqrt(2))), abs=1e-12)
    # [-3, 3]: lower is the tangent at 0 (x/2: gelu(x) - x/2 = x (Phi(x) - 1/2) >= 0); upper the chord,
    # slope (gelu(3) - gelu(-3)) / 6 = 1/2, intercept (gelu(3) + gelu(-3)) / 2 = 3 (Phi(3) - 1/2).
    phi3 = 0.5 * (1 + math.erf(3 / math.sqrt(2)))
    assert_lines(relax_at("gelu", -3.0, 3.0), (0.5, 0.0, 0.5, 3 * (phi3 - 0.5)), TOL_DEFAULT)


# ----------------------------------------------------------------------------------------------------
# sin and cos


def test_sin_interval_with_a_crest() -> None:
    lo, hi = REGISTRY["sin"].interval(box(0.0), box(2.0))  # type: ignore[misc]
    assert (float(lo), float(hi)) == pytest.approx((0.0, 1.0), abs=1e-12)
    lo, hi = REGISTRY["sin"].interval(box(4.0), box(5.0))  # type: ignore[misc]
    assert (float(lo), float(hi)) == pytest.approx((-1.0, math.sin(4.0)), abs=1e-12)


@pytest.mark.parametrize(("low", "up"), [(-1.0, 7.0), (100.0, 100.0 + 2 * math.pi + 1e-6), (-50.0, 50.0)])
def test_sin_wider_than_a_period_gives_constants(low: float, up: float) -> None:
    for alpha in (None, [0.0, 0.0], [1.0, 1.0], [0.3, 0.8]):
        assert_lines(relax_at("sin", low, up, alpha), (0.0, -1.0, 0.0, 1.0), TOL_EXACT)
        assert_lines(relax_at("cos", low, up, alpha), (0.0, -1.0, 0.0, 1.0), TOL_EXACT)


def test_sin_on_a_concave_half_period() -> None:
    # [0, pi]: lower is the chord y = 0; upper the tangent at pi/2, y = 1.
    assert_lines(relax_at("sin", 0.0, math.pi), (0.0, 0.0, 0.0, 1.0), TOL_DEFAULT)


def test_cos_is_sin_shifted() -> None:
    """cos on [l, u] with alpha = sin on [l + pi/2, u + pi/2] with alpha, lines moved back by pi/2."""
    gen = torch.Generator().manual_seed(3)
    low = -20 + 40 * torch.rand(300, generator=gen, dtype=DTYPE)
    up = low + 8 * torch.rand(300, generator=gen, dtype=DTYPE) ** 2
    shift = math.pi / 2
    cos_op, sin_op = REGISTRY["cos"], REGISTRY["sin"]
    lo_c, hi_c = cos_op.interval((low,), (up,))  # type: ignore[misc]
    lo_s, hi_s = sin_op.interval((low + shift,), (up + shift,))  # type: ignore[misc]
    torch.testing.assert_close(lo_c, lo_s, rtol=0, atol=1e-9)
    torch.testing.assert_close(hi_c, hi_s, rtol=0, atol=1e-9)
    alpha = torch.rand((2, 300), generator=gen, dtype=DTYPE)
    rc = cos_op.relax((low,), (up,), alpha)  # type: ignore[misc]
    rs = sin_op.relax((low + shift,), (up + shift,), alpha)  # type: ignore[misc]
    for wc, bc, ws, bs in ((rc.lw[0], rc.lb, rs.lw[0], rs.lb), (rc.uw[0], rc.ub, rs.uw[0], rs.ub)):
        torch.testing.assert_close(wc, ws, rtol=0, atol=1e-9)
        torch.testing.assert_close(bc, bs + ws * shift, rtol=0, atol=1e-8 * (1 + up.abs().max().item()))


# ----------------------------------------------------------------------------------------------------
# mul (McCormick) and linear ops


def _mul_relax(xl: float, xu: float, yl: float, yu: float, r: float, s: float) -> tuple[float, ...]:
    op = REGISTRY["mul"]
    lows, ups = box(xl, yl), box(xu, yu)
    rel = op.relax(lows, ups, torch.tensor([[r], [s]], dtype=DTYPE))  # type: ignore[misc]
    return tuple(float(t) for t in (*rel.lw, rel.lb, *rel.uw, rel.ub))


def test_mul_mccormick_unit_square() -> None:
    # r = 1: xy >= yl x + xl y - xl yl = 0, xy <= yu x + xl y - xl yu = x.
    assert _mul_relax(0, 1, 0, 1, 1.0, 1.0) == pytest.approx((0, 0, 0, 1, 0, 0), abs=TOL_EXACT)
    # r = 0: xy >= yu x + xu y - xu yu = x + y - 1, xy <= yl x + xu y - xu yl = y.
    assert _mul_relax(0, 1, 0, 1, 0.0, 0.0) == pytest.approx((1, 1, -1, 0, 1, 0), abs=TOL_EXACT)


def test_mul_mccormick_general_box() -> None:
    # [1, 2] x [-1, 3], r = 1: lower -x + y + 1, upper 3x + y - 3;
    # r = 0: lower 3x + 2y - 6, upper -x + 2y + 2.
    assert _mul_relax(1, 2, -1, 3, 1.0, 1.0) == pytest.approx((-1, 1, 1, 3, 1, -3), abs=TOL_EXACT)
    assert _mul_relax(1, 2, -1, 3, 0.0, 0.0) == pytest.approx((3, 2, -6, -1, 2, 2), abs=TOL_EXACT)
    # r = 1/2 averages the planes.
    assert _mul_relax(1, 2, -1, 3, 0.5, 0.5) == pytest.approx((1, 1.5, -2.5, 1, 1.5, -0.5), abs=TOL_EXACT)
    lo, hi = REGISTRY["mul"].interval(box(1.0, -1.0), box(2.0, 3.0))  # type: ignore[misc]
    assert (float(lo), float(hi)) == (-2.0, 6.0)


def test_linear_interval_is_exact() -> None:
    # y = x1 - 2 x2 + 1/2 on [0, 1]^2: min at (0, 1) = -3/2, max at (1, 0) = 3/2.
    op = REGISTRY["linear"]
    params = {"weight": Const([[1.0, -2.0]]), "bias": Const([0.5])}
    lo, hi = op.interval((torch.zeros(1, 2, dtype=DTYPE),), (torch.ones(1, 2, dtype=DTYPE),), **params)  # type: ignore[misc]
    assert (float(lo), float(hi)) == (-1.5, 1.5)


def test_matmul_interval() -> None:
    # [[x1, x2]] @ [[y1], [y2]] with x in [0, 1]^2, y in [-1, 2]^2: each product in [-1, 2], sum in [-2, 4].
    op = REGISTRY["matmul"]
    lows = (torch.zeros(1, 1, 2, dtype=DTYPE), torch.full((1, 2, 1), -1.0, dtype=DTYPE))
    ups = (torch.ones(1, 1, 2, dtype=DTYPE), torch.full((1, 2, 1), 2.0, dtype=DTYPE))
    lo, hi = op.interval(lows, ups)  # type: ignore[misc]
    assert (float(lo), float(hi)) == (-2.0, 4.0)


# ----------------------------------------------------------------------------------------------------
# Registry-wide: relaxation lines touch f


def _grid(low: Tensor, up: Tensor, n: int) -> Tensor:
    """(N, n) points from low to up, endpoints exact."""
    t = torch.linspace(0.0, 1.0, n, dtype=DTYPE)
    x = low.unsqueeze(-1) + t * (up - low).unsqueeze(-1)
    x[:, -1] = up
    return torch.minimum(torch.maximum(x, low.unsqueeze(-1)), up.unsqueeze(-1))


def min_over_box(
    g: Callable[[Tensor], Tensor], low: Tensor, up: Tensor, n: int = 2001, basins: int = 6
) -> Tensor:
    """min of g over each box [low_i, up_i] ((N,) each; g maps (N, K) to (N, K)).

    A grid, then zooming around the ``basins`` lowest local minima of the grid (a single zoom can pick
    the wrong basin when two nearly tie, e.g. an endpoint next to a crest).
    """
    x = _grid(low, up, n)
    v = g(x)
    inf = torch.full_like(v[:, :1], math.inf)
    left, right = torch.cat([inf, v[:, :-1]], 1), torch.cat([v[:, 1:], inf], 1)
    local = torch.where((v <= left) & (v <= right), v, inf.expand_as(v))
    idx = local.topk(min(basins, n), dim=1, largest=False).indices
    centre = x.gather(1, idx)
    step = ((up - low) / (n - 1)).unsqueeze(-1).expand_as(centre)
    best = v.min(1).values
    lo_b, up_b = low.unsqueeze(-1), up.unsqueeze(-1)
    for _ in range(6):
        t = torch.linspace(-1.0, 1.0, 41, dtype=DTYPE)
        pts = (centre.unsqueeze(-1) + step.unsqueeze(-1) * t).clamp(
            min=lo_b.unsqueeze(-1), max=up_b.unsqueeze(-1)
        )
        vals = g(pts.flatten(1)).reshape(pts.shape)
        j = vals.argmin(-1, keepdim=True)
        best = torch.minimum(best, vals.min(-1).values.min(-1).values)
        centre = pts.gather(-1, j).squeeze(-1)
        step = step / 20
    return best


def _touch_cases() -> list[Any]:
    return [
        pytest.param(op.name, i, id=f"{op.name}-{i}")
        for op in REGISTRY.values()
        if op.kind == "nonlinear" and op.arity == 1 and op.name not in NOT_TOUCHING
        for i in range(len(op.sample_params))
    ]


def _domain_boxes(op: OpDef, n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Boxes in ``sample_domain`` with widths 1e-6 .. 30; a one-sided domain clips l to its edge."""
    d_lo, d_hi = op.sample_domain
    centre = d_lo + (d_hi - d_lo) * torch.rand(n, generator=gen, dtype=DTYPE)
    width = 10 ** (-6 + 7.5 * torch.rand(n, generator=gen, dtype=DTYPE))
    low, up = centre - 0.5 * width, centre + 0.5 * width
    if d_lo >= 0:
        low = low.clamp(min=d_lo)
        up = torch.maximum(up, low)
    return low, up


def touch_gaps(
    op: OpDef, params: dict[str, Any], low: Tensor, up: Tensor, alpha: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(min of f - lower, min of upper - f, tolerance) per box."""
    r = op.relax((low,), (up,), alpha, **params)  # type: ignore[misc]

    def f(x: Tensor) -> Tensor:
        return op.forward(x, **params)

    lw, lb, uw, ub = (t.expand_as(low).unsqueeze(-1) for t in (r.lw[0], r.lb, r.uw[0], r.ub))
    gap_lo = min_over_box(lambda x: f(x) - (lw * x + lb), low, up)
    gap_up = min_over_box(lambda x: (uw * x + ub) - f(x), low, up)
    scale = f(_grid(low, up, 101)).abs().amax(-1)
    return gap_lo, gap_up, TOUCH_TOL * (1 + scale)


@pytest.mark.parametrize(("name", "index"), _touch_cases())
def test_relaxation_lines_touch_f(name: str, index: int) -> None:
    """For the default and for random alphas, each line meets f on the box (tight offsets)."""
    op = REGISTRY[name]
    params = dict(op.sample_params[index])
    gen = torch.Generator().manual_seed(5 + index)
    low, up = _domain_boxes(op, 200, gen)
    init = op.init_alpha((low,), (up,), **params)
    for label, alpha in (("init", init), ("random", torch.rand(init.shape, generator=gen, dtype=DTYPE))):
        gap_lo, gap_up, tol = touch_gaps(op, params, low, up, alpha)
        for side, gap in (("lower", gap_lo), ("upper", gap_up)):
            bad = gap.abs() > tol
            if bad.any():
                i = int(bad.nonzero()[0])
                pytest.fail(
                    f"{name}{params} ({label} alpha): {side} line misses f by {float(gap[i])!r} on box "
                    f"[{float(low[i])!r}, {float(up[i])!r}] alpha {alpha[:, i].tolist()} "
                    f"({int(bad.sum())} boxes)"
                )


def test_mul_planes_touch_at_corners() -> None:
    """Lower planes are exact at the corners (xl, yu), (xu, yl); upper ones at (xl, yl), (xu, yu)."""
    op = REGISTRY["mul"]
    gen = torch.Generator().manual_seed(9)
    xl, yl = (-5 + 10 * torch.rand(500, generator=gen, dtype=DTYPE) for _ in range(2))
    xu, yu = (
        xl + 3 * torch.rand(500, generator=gen, dtype=DTYPE),
        yl + 3 * torch.rand(500, generator=gen, dtype=DTYPE),
    )
    alpha = torch.rand((2, 500), generator=gen, dtype=DTYPE)
    r = op.relax((xl, yl), (xu, yu), alpha)  # type: ignore[misc]
    for (x, y), (ws, b) in (
        (corner, line)
        for line, corners in (((r.lw, r.lb), ((xl, yu), (xu, yl))), ((r.uw, r.ub), ((xl, yl), (xu, yu))))
        for corner in corners
    ):
        f = x * y
        assert bool(((ws[0] * x + ws[1] * y + b - f).abs() <= TOUCH_TOL * (1 + f.abs())).all())


def test_touch_check_detects_a_loose_line() -> None:
    """The touch property fails for a sound relaxation moved away from f by a small constant."""
    op = REGISTRY["sigmoid"]
    low, up = torch.tensor([-4.0, -1.0, 2.0], dtype=DTYPE), torch.tensor([-1.0, 3.0, 2.5], dtype=DTYPE)
    r = op.relax((low,), (up,), op.init_alpha((low,), (up,)))  # type: ignore[misc]

    def f(x: Tensor) -> Tensor:
        return op.forward(x)

    lw, lb = r.lw[0].unsqueeze(-1), (r.lb - 1e-7).unsqueeze(-1)
    gap = min_over_box(lambda x: f(x) - (lw * x + lb), low, up)
    assert bool((gap > 10 * TOUCH_TOL).all())
    assert gap.tolist() == pytest.approx([1e-7] * 3, abs=1e-10)

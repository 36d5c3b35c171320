"""Tiny graphs whose IBP, CROWN and alpha-CROWN bounds are computed by hand."""

import math

import pytest
import torch

from gridverify.bounds import AlphaConfig, alpha_crown, crown, ibp
from gridverify.ir import GraphBuilder
from gridverify.ops import DomainError

F64 = torch.float64


def _box(lo: list[float], hi: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([lo], dtype=F64), torch.tensor([hi], dtype=F64)


def _bounds(result) -> list[float]:
    return [float(result.lower[0, 0]), float(result.upper[0, 0])]


def _ibp_holds(result, exact: list[float]) -> bool:
    """IBP's interval contains ``exact`` and exceeds it by at most its rounding margin
    (`gridverify.bounds.core.LINEAR_ROUNDING`, relative to the magnitudes summed)."""
    lo, hi = _bounds(result)
    return lo <= exact[0] and hi >= exact[1] and [lo, hi] == pytest.approx(exact, rel=1e-10, abs=1e-10)


def test_linear_cancellation_is_exact_under_crown() -> None:
    """y = (x1 + x2) - (x1 - x2) = 2 x2 on [0,1]^2: IBP [-1, 3], CROWN exact [0, 2]."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build((x[0] + x[1]) - (x[0] - x[1]))
    box = _box([0, 0], [1, 1])
    assert _ibp_holds(ibp(g, box), [-1.0, 3.0])
    assert _bounds(crown(g, box)) == pytest.approx([0.0, 2.0], abs=1e-15)


def test_relu_difference() -> None:
    """y = x - relu(x) = min(x, 0) on [-1, 1]: IBP [-2, 1]; CROWN: chord 0.5x + 0.5 above relu gives the
    lower bound -1, the default lower slope 0 (u = -l) gives the upper bound 1; alpha-CROWN moves the
    lower slope of relu to 1 and proves y <= 0."""
    b = GraphBuilder()
    x = b.input("x", (1,))
    g = b.build(x - b.relu(x))
    box = _box([-1], [1])
    assert _ibp_holds(ibp(g, box), [-2.0, 1.0])
    # The chord's offset is rounded outward (a few ulps): -1 is certified as -1 - 2e-15.
    lower, upper = _bounds(crown(g, box))
    assert -1.0 - 1e-14 <= lower < -1.0 and upper == 1.0
    assert _bounds(alpha_crown(g, box, config=AlphaConfig(steps=100, lr=0.1))) == pytest.approx(
        [-1.0, 0.0], abs=1e-6
    )


def test_bilinear_mccormick() -> None:
    """y = x1*x2 - x1 = x1 (x2 - 1) on [0,1]^2, true range [-1, 0]. IBP [-1, 1]. CROWN (both McCormick
    weights 1/2): x1*x2 <= (x1 + x2)/2, so y <= (x2 - x1)/2 <= 1/2; x1*x2 >= (x1 + x2 - 1)/2 gives
    y >= -1. alpha-CROWN moves the upper weight to r' = 1 (x1*x2 <= x1) and proves y <= 0."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(x[0] * x[1] - x[0])
    box = _box([0, 0], [1, 1])
    assert _ibp_holds(ibp(g, box), [-1.0, 1.0])
    assert _bounds(crown(g, box)) == pytest.approx([-1.0, 0.5], abs=1e-12)
    assert _bounds(alpha_crown(g, box, config=AlphaConfig(steps=100, lr=0.1))) == pytest.approx(
        [-1.0, 0.0], abs=1e-6
    )


def test_square_minus_linear() -> None:
    """y = x^2 - x on [0, 2]: true range [-1/4, 2]. IBP [0, 4] - [0, 2] = [-2, 4]. CROWN: chord 2x above
    x^2 gives y <= x <= 2; the tangent at the midpoint 1 (x^2 >= 2x - 1) gives y >= x - 1 >= -1.
    alpha-CROWN moves the tangent to x = 1/2 (x^2 >= x - 1/4), which gives the exact -1/4."""
    b = GraphBuilder()
    x = b.input("x", (1,))
    g = b.build(x * x - x)
    box = _box([0], [2])
    assert _ibp_holds(ibp(g, box), [-2.0, 4.0])
    assert _bounds(crown(g, box)) == pytest.approx([-1.0, 2.0], abs=1e-12)
    lower, upper = _bounds(alpha_crown(g, box, config=AlphaConfig(steps=200, lr=0.05, patience=40)))
    assert lower == pytest.approx(-0.25, abs=1e-4) and upper == pytest.approx(2.0, abs=1e-12)


def test_sin_interval_and_crown_on_half_period() -> None:
    """sin on [0, pi] has the exact interval [0, 1]; y = sin(x) - x has range [-pi, 0] (decreasing);
    CROWN's lower chord of sin (slope 0 through the endpoints) gives y >= -x >= -pi, its upper tangent at
    pi/2 (y <= 1 - x) gives y <= 1, and IBP gives [-pi, 1]."""
    b = GraphBuilder()
    x = b.input("x", (1,))
    s = b.sin(x)
    g = b.build({"s": s, "y": s - x})
    box = _box([0], [math.pi])
    assert _bounds(ibp(g, box, "s")) == pytest.approx([0.0, 1.0], abs=1e-12)
    assert _bounds(crown(g, box, "y")) == pytest.approx([-math.pi, 1.0], abs=1e-9)


def test_spec_matrix_selects_combinations() -> None:
    """C = [[1, -1]] on y = (x, x) gives exactly 0 under CROWN (IBP: [-2, 2])."""
    b = GraphBuilder()
    x = b.input("x", (1,))
    g = b.build(b.concat([b.tanh(x), b.tanh(x)]))
    box = _box([-1], [1])
    c = torch.tensor([[1.0, -1.0]], dtype=F64)
    assert _ibp_holds(ibp(g, box, spec=c), [-2 * math.tanh(1), 2 * math.tanh(1)])
    assert _bounds(crown(g, box, spec=c)) == pytest.approx([0.0, 0.0], abs=1e-12)


def test_batched_boxes_are_independent() -> None:
    b = GraphBuilder()
    x = b.input("x", (1,))
    g = b.build(b.relu(x))
    lo = torch.tensor([[-1.0], [1.0], [-3.0]], dtype=F64)
    hi = torch.tensor([[1.0], [2.0], [-2.0]], dtype=F64)
    r = crown(g, (lo, hi))
    assert r.lower[:, 0].tolist() == [0.0, 1.0, 0.0] and r.upper[:, 0].tolist() == [1.0, 2.0, 0.0]


def test_reciprocal_of_a_box_containing_zero_names_the_node() -> None:
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(b.apply("reciprocal", x + x, name="inverse"))
    with pytest.raises(DomainError, match=r"node 2 'inverse' \(reciprocal.*excludes 0.*\[-2, 2\]"):
        crown(g, _box([-1, 1], [1, 2]))


def test_float32_is_refused_with_a_clear_message() -> None:
    """float32 is not rounded outward (clip(x, -0.3, 1.7) on [2, 3] was certified as [1.70000005]^2, above
    the true 1.7, from the rounded constant): every bound entry point refuses it."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(b.sigmoid(x[0] * x[1]))
    lo, hi = _box([-1, 0], [1, 1])
    for bound in (ibp, crown, alpha_crown):
        with pytest.raises(ValueError, match=r"float32.*float64 only"):
            bound(g, (lo.float(), hi.float()))
    r = crown(g, (lo, hi))
    assert r.lower.dtype == F64
    assert float(r.lower[0, 0]) <= 1 / (1 + math.e) and float(r.upper[0, 0]) >= 1 / (1 + math.exp(-1))


def test_bad_boxes_are_rejected() -> None:
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(b.relu(x))
    with pytest.raises(ValueError, match="lower > upper"):
        crown(g, _box([1, 0], [0, 1]))
    with pytest.raises(ValueError, match=r"shape \(B, \*\(2,\)\)"):
        crown(g, _box([0], [1]))


def test_nonnegative_sum_keeps_its_lower_end() -> None:
    """``1 + sum exp(x)`` over a box where exp spans [e^-9, e^212] (a softmax denominator): the lower end
    is near 1 (its rounding margin is relative to the lower corner, not to 1e92), so 1/(...) is defined."""
    b = GraphBuilder()
    x = b.input("x", (3,))
    g = b.build({"y": b.apply("reciprocal", b.add(b.sum(b.apply("exp", x)), 1.0))})
    lo, hi = _bounds(ibp(g, _box([-9, -9, -9], [212, 0, 0])))
    exact_hi = 1 / (1 + 3 * math.exp(-9))
    assert 0 < lo < 1e-90 and exact_hi <= hi <= exact_hi * (1 + 1e-10)

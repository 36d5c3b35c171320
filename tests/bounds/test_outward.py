"""Outward rounding seen from the bound entry points (issue #15).

- the relu / abs chord: CROWN's upper bound of ``relu(x)`` on ``[l, u]`` (l < 0 < u) fell below
  ``relu(u) = u`` in 17% of random boxes (abs: 7%) before the chord's offset was rounded outward;
- ops with a nonnegative output keep it: ``sqrt(p^2 + q^2)`` with p, q straddling 0 and ``log(exp(x))`` on
  [-20, 20] raised `DomainError` (the square's lower bound was -1.2e-14, exp's -1.7e-6);
- float32 boxes are refused (``clip(x, -0.3, 1.7)`` on [2, 3] was certified as 1.70000005 > 1.7);
- ``r.linear`` has the batch of the boxes even when the output is linear in the input.
"""

import math

import pytest
import torch

from gridverify.bounds import AlphaConfig, alpha_crown, crown, ibp
from gridverify.ir import GraphBuilder
from gridverify.ir.graph import Graph

F64 = torch.float64
N_PROBE = 20_000


def _unary(op: str, **params: float) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (1,))
    return b.build(b.apply(op, x, **params))


def _straddling_boxes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[l, u]`` with -l and u log-uniform in [1e-3, 1e3], shape (n, 1)."""
    gen = torch.Generator().manual_seed(seed)
    low = -(10.0 ** (6 * torch.rand(n, 1, generator=gen, dtype=F64) - 3))
    up = 10.0 ** (6 * torch.rand(n, 1, generator=gen, dtype=F64) - 3)
    return low, up


@pytest.mark.parametrize("op", ["relu", "abs"])
def test_chord_upper_bound_reaches_both_ends(op: str) -> None:
    low, up = _straddling_boxes(N_PROBE, seed=15)
    r = crown(_unary(op), (low, up))
    f = getattr(torch, op)
    assert bool((r.upper >= f(up)).all()) and bool((r.upper >= f(low)).all())
    assert bool((r.lower <= 0).all())
    # Outward, not loose: a few ulps of the magnitudes above the true maximum.
    top = torch.maximum(f(low), f(up))
    assert bool((r.upper - top <= 1e-13 * (1 + top)).all())


def test_sqrt_of_a_sum_of_squares_straddling_zero() -> None:
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(b.sqrt(x[0] ** 2 + x[1] ** 2))
    box = (torch.tensor([[-1.3, -0.7]], dtype=F64), torch.tensor([[2.1, 0.9]], dtype=F64))
    corners = torch.tensor([[p, q] for p in (-1.3, 0.0, 2.1) for q in (-0.7, 0.0, 0.9)], dtype=F64)
    values = g.forward(corners)["y"]
    for bound in (ibp, crown, lambda g, box: alpha_crown(g, box, config=AlphaConfig(steps=10))):
        r = bound(g, box)
        assert float(r.lower[0, 0]) == 0.0  # the true minimum, at p = q = 0: clamped to sqrt's range
        assert float(r.upper[0, 0]) >= float(values.max())
        assert float(r.upper[0, 0]) <= math.hypot(2.1, 0.9) + 1e-9


def test_log_of_exp_on_a_wide_box() -> None:
    b = GraphBuilder()
    x = b.input("x", (1,))
    g = b.build(b.log(b.exp(x)))
    box = (torch.tensor([[-20.0]], dtype=F64), torch.tensor([[20.0]], dtype=F64))
    xs = torch.linspace(-20.0, 20.0, 401, dtype=F64).reshape(-1, 1)
    values = g.forward(xs)["y"]
    for bound in (ibp, crown, lambda g, box: alpha_crown(g, box, config=AlphaConfig(steps=10))):
        r = bound(g, box)
        lower, upper = float(r.lower[0, 0]), float(r.upper[0, 0])
        assert lower <= float(values.min()) and upper >= float(values.max())
        assert lower == pytest.approx(-20.0, abs=1e-9) and upper == pytest.approx(20.0, abs=1e-9)


def test_nonnegative_intervals_are_clamped_to_the_ops_range() -> None:
    """The interval of a square or exp never goes below 0 (its outward margin is clamped away)."""
    b = GraphBuilder()
    x = b.input("x", (3,))
    g = b.build({"sq": b.square(x), "e": b.exp(x), "s": b.sigmoid(x)})
    box = (torch.tensor([[-1e-3, -50.0, 30.0]], dtype=F64), torch.tensor([[1e-3, -40.0, 40.0]], dtype=F64))
    sq, e, s = (crown(g, box, output=name) for name in ("sq", "e", "s"))
    assert bool((sq.lower >= 0).all()) and float(sq.lower[0, 0]) == 0.0
    assert bool((e.lower > 0).all())  # exp(-50) > 0: a relative margin, not an absolute one
    assert bool((s.upper <= 1).all()) and bool((s.lower >= 0).all())


def test_clip_at_its_limit_is_certified_exactly() -> None:
    r = crown(
        _unary("clip", lo=-0.3, hi=1.7), (torch.tensor([[2.0]], dtype=F64), torch.tensor([[3.0]], dtype=F64))
    )
    assert float(r.lower[0, 0]) == 1.7 and float(r.upper[0, 0]) == 1.7


@pytest.mark.parametrize("bound", [ibp, crown, alpha_crown])
def test_float32_boxes_are_refused(bound) -> None:
    box = (torch.tensor([[2.0]], dtype=torch.float32), torch.tensor([[3.0]], dtype=torch.float32))
    with pytest.raises(ValueError, match=r"float32.*float64 only"):
        bound(_unary("clip", lo=-0.3, hi=1.7), box)


def test_linear_bounds_have_the_batch_of_the_boxes() -> None:
    """Output linear in the input: the coefficients never met a batched tensor, and were (1, m, n)."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    g = b.build(b.linear(x, torch.tensor([[1.0, -2.0]], dtype=F64), torch.tensor([0.5], dtype=F64)))
    low = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 3.0]], dtype=F64)
    up = low + torch.tensor([[1.0, 1.0], [0.5, 2.0], [0.0, 0.0]], dtype=F64)
    for r in (crown(g, (low, up)), alpha_crown(g, (low, up))):
        lin = r.linear
        assert lin is not None
        assert lin.lower["x"].shape == (3, 1, 2) and lin.upper["x"].shape == (3, 1, 2)
        assert lin.lower_bias.shape == (3, 1) and lin.upper_bias.shape == (3, 1)
        assert torch.equal(lin.lower["x"][:, 0], torch.tensor([[1.0, -2.0]] * 3, dtype=F64))
        # The linear form concretised over each box gives that box's bound.
        w, c = lin.lower["x"][:, 0], lin.lower_bias[:, 0]
        assert torch.allclose(c + (w.clamp(min=0) * low + w.clamp(max=0) * up).sum(1), r.lower[:, 0])


def test_batched_relu_bounds_keep_exact_lines_exact() -> None:
    """Exact lines (relu's y = x, y = 0, alpha*x) are not widened: fully active / inactive boxes are
    certified exactly."""
    g = _unary("relu")
    low = torch.tensor([[1.0], [-3.0], [0.0]], dtype=F64)
    up = torch.tensor([[2.0], [-2.0], [5.0]], dtype=F64)
    r = crown(g, (low, up))
    assert r.lower[:, 0].tolist() == [1.0, 0.0, 0.0] and r.upper[:, 0].tolist() == [2.0, 0.0, 5.0]

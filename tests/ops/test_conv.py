"""Convolutions and leaky relu: the conv adjoints equal the vector-Jacobian product of the forward (the
generic transpose), intervals contain sampled outputs, and leaky relu's lines on hand-computed boxes."""

from __future__ import annotations

import pytest
import torch

from gridverify.const import Const
from gridverify.ops import REGISTRY

DTYPE = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _case(
    name: str, in_shape: tuple, w_shape: tuple, case_id: str, stride: tuple, padding: tuple, **attrs: object
) -> object:
    """One case; dilation 1 and one group unless ``attrs`` say otherwise."""
    attrs = {"dilation": (1,) * len(stride), "groups": 1, **attrs, "stride": stride, "padding": padding}
    return pytest.param(name, in_shape, w_shape, attrs, id=case_id)


T = "conv_transpose"
CONV_CASES = [
    _case("conv", (2, 5, 6), (4, 2, 3, 2), "conv2d", (1, 2), (1, 0)),
    _case("conv", (4, 7, 7), (6, 2, 3, 3), "conv2d_groups", (2, 2), (1, 1), dilation=(2, 1), groups=2),
    _case("conv", (3, 9), (2, 3, 4), "conv1d", (3,), (2,)),
    _case("conv", (3, 2, 5), (3, 1, 1, 1), "depthwise_1x1", (1, 1), (0, 0), groups=3),
    _case(T, (3, 4, 5), (3, 2, 4, 4), "convT2d", (2, 2), (1, 1), output_padding=(1, 0)),
    _case(T, (4, 3, 3), (4, 1, 3, 3), "convT2d_groups", (1, 2), (0, 1), output_padding=(0, 1), groups=2),
]


def _params(name: str, in_shape: tuple, w_shape: tuple, attrs: dict) -> dict:
    w = torch.randn(w_shape, generator=_gen(1), dtype=DTYPE)
    out_c = w_shape[0] if name == "conv" else w_shape[1] * attrs["groups"]
    params = {"weight": Const(w), "bias": Const(torch.randn(out_c, generator=_gen(2), dtype=DTYPE)), **attrs}
    if name == "conv":
        params["in_spatial"] = tuple(in_shape[1:])
    return params


@pytest.mark.parametrize(("name", "in_shape", "w_shape", "attrs"), CONV_CASES)
def test_adjoint_is_the_vector_jacobian_product(
    name: str, in_shape: tuple, w_shape: tuple, attrs: dict
) -> None:
    op, params = REGISTRY[name], _params(name, in_shape, w_shape, attrs)
    out_shape = op.shape(in_shape, **params)
    a = torch.randn((2, 3, *out_shape), generator=_gen(3), dtype=DTYPE)
    x = torch.zeros((6, *in_shape), dtype=DTYPE, requires_grad=True)
    y = op.forward(x, **params)
    assert tuple(y.shape[1:]) == tuple(out_shape)
    (vjp,) = torch.autograd.grad(y, x, grad_outputs=a.reshape(6, *out_shape))
    (adj,) = op.adjoint(a, **params)
    assert adj.shape == (2, 3, *in_shape)
    assert torch.allclose(adj.reshape(6, *in_shape), vjp, rtol=1e-12, atol=1e-12)
    const = op.constant_term(**params).like(a)
    assert torch.allclose(
        op.forward(torch.zeros((1, *in_shape), dtype=DTYPE), **params)[0], const.expand(out_shape)
    )


@pytest.mark.parametrize(("name", "in_shape", "w_shape", "attrs"), CONV_CASES)
def test_interval_contains_samples(name: str, in_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    op, params = REGISTRY[name], _params(name, in_shape, w_shape, attrs)
    centre = torch.randn((4, *in_shape), generator=_gen(4), dtype=DTYPE)
    radius = torch.rand((4, *in_shape), generator=_gen(5), dtype=DTYPE) * torch.tensor(
        [0.0, 1e-9, 0.3, 100.0]
    ).reshape(4, *(1,) * len(in_shape))
    lo, hi = op.interval((centre - radius,), (centre + radius,), **params)
    t = torch.rand((200, 4, *in_shape), generator=_gen(6), dtype=DTYPE)
    xs = (centre - radius + 2 * radius * t.round()).reshape(800, *in_shape)  # vertices of the box
    y = op.forward(xs, **params).reshape(200, 4, *lo.shape[1:])
    slack = 1e-12 * (1 + y.abs() + lo.abs() + hi.abs())
    assert bool((lo <= y + slack).all()) and bool((y <= hi + slack).all())


def test_leaky_relu_lines_by_hand() -> None:
    """Box [-2, 2], slope 0.1: chord through (-2, -0.2) and (2, 2): slope 0.55, offset 0.9; the lower line
    through 0 has slope 0.1 + alpha * 0.9. Slope 3 (concave): the chord is the lower line."""
    op = REGISTRY["leaky_relu"]
    l, u = torch.tensor([[-2.0]], dtype=DTYPE), torch.tensor([[2.0]], dtype=DTYPE)
    r = op.relax((l,), (u,), torch.full((1, 1, 1), 0.5, dtype=DTYPE), negative_slope=0.1)
    assert float(r.uw[0]) == pytest.approx(0.55) and float(r.ub) == pytest.approx(0.9, abs=1e-12)
    assert float(r.ub) >= 0.9 and float(r.lw[0]) == pytest.approx(0.55) and float(r.lb) <= 0.0
    r = op.relax((l,), (u,), torch.zeros((1, 1, 1), dtype=DTYPE), negative_slope=3.0)
    assert (
        float(r.lw[0]) == pytest.approx(2.0) and float(r.lb) == pytest.approx(-2.0) and float(r.uw[0]) == 1.0
    )
    lo, hi = op.interval((l,), (u,), negative_slope=-0.5)
    assert (float(lo), float(hi)) == (0.0, 2.0)

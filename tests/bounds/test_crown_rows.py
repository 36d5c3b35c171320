"""CROWN bounds many specification rows in blocks of `ROWS` per backward pass: the same bounds and linear
forms as one pass over all rows."""

import sys

import torch

from gridverify.bounds import crown
from gridverify.ir import GraphBuilder

F64 = torch.float64


def test_rows_in_blocks_give_the_one_pass_bounds(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder()
    x = b.input("x", (5,))
    h = b.sigmoid(b.linear(x, torch.randn(16, 5, generator=gen, dtype=F64), torch.zeros(16, dtype=F64)))
    y = b.linear(h, torch.randn(12, 16, generator=gen, dtype=F64), torch.zeros(12, dtype=F64))
    g = b.build({"y": b.sin(y) * y})
    box = (torch.full((1, 5), -1.0, dtype=F64), torch.full((1, 5), 1.0, dtype=F64))
    spec = torch.randn(300, 12, generator=gen, dtype=F64)
    whole = crown(g, box, "y", spec, keep_linear=True)
    monkeypatch.setattr(sys.modules["gridverify.bounds.crown"], "ROWS", 64)
    blocks = crown(g, box, "y", spec, keep_linear=True)
    assert torch.allclose(whole.lower, blocks.lower, rtol=1e-12, atol=1e-12)
    assert torch.allclose(whole.upper, blocks.upper, rtol=1e-12, atol=1e-12)
    assert whole.linear is not None and blocks.linear is not None
    assert torch.allclose(whole.linear.lower["x"], blocks.linear.lower["x"], rtol=1e-12, atol=1e-12)
    assert torch.allclose(whole.linear.upper_bias, blocks.linear.upper_bias, rtol=1e-12, atol=1e-12)
    assert blocks.linear.lower["x"].shape == (1, 300, 5)

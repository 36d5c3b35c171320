"""reciprocal on boxes with an infinite far end (an overflowed softmax denominator ``1 + sum exp``): finite,
sound bounds ``[0, 1/l]`` / ``[1/u, 0]`` and constant lines, never NaN."""

from __future__ import annotations

import math

import torch

from gridverify.ops import REGISTRY

DTYPE = torch.float64


def test_infinite_far_end_gives_constant_bounds() -> None:
    op = REGISTRY["reciprocal"]
    l = torch.tensor([[1.0, 3.0, -math.inf, 0.25]], dtype=DTYPE)
    u = torch.tensor([[math.inf, math.inf, -4.0, 8.0]], dtype=DTYPE)
    lo, hi = op.interval((l,), (u,))
    r = op.relax((l,), (u,), op.init_alpha((l,), (u,)))
    for t in (lo, hi, r.lw[0], r.lb, r.uw[0], r.ub):
        assert not bool(t.isnan().any())
    xs = torch.tensor([1.0, 3.0, -4.0, 0.25, 1e300, -1e300, 8.0, 2.0], dtype=DTYPE)
    for j in range(4):
        inside = xs[(xs >= l[0, j]) & (xs <= u[0, j])]
        f = 1 / inside
        assert bool((lo[0, j] <= f).all() and (f <= hi[0, j]).all())
        assert bool((r.lw[0][0, j] * inside + r.lb[0, j] <= f).all())
        assert bool((f <= r.uw[0][0, j] * inside + r.ub[0, j]).all())
    assert float(lo[0, 0]) == 0.0 and 1.0 <= float(hi[0, 0]) <= 1.0 + 1e-12
    assert float(hi[0, 2]) == 0.0 and -0.25 - 1e-12 <= float(lo[0, 2]) <= -0.25

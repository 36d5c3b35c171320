"""Random graphs that mix every registered nonlinear op, for whole-graph soundness tests."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from gridverify.ir import Graph, GraphBuilder, Var
from gridverify.ops import REGISTRY

WIDTH = 4


def _positive(b: GraphBuilder, h: Var) -> Var:
    """Maps h into [0.1, 1.1], inside the domain of log, sqrt and reciprocal."""
    return b.sigmoid(h) + 0.1


def _unary(name: str) -> Callable[[GraphBuilder, Var, random.Random], Var]:
    op = REGISTRY[name]

    def apply(b: GraphBuilder, h: Var, rng: random.Random) -> Var:
        params = rng.choice(op.sample_params)
        if op.sample_domain[0] >= 0:
            h = _positive(b, h)
        elif name == "exp":
            h = h * 0.3
        return b.apply(name, h, **params)

    return apply


def _mul(b: GraphBuilder, h: Var, rng: random.Random) -> Var:
    return b.mul(h, b.tanh(_mix(b, h, rng)))


def _matmul(b: GraphBuilder, h: Var, rng: random.Random) -> Var:
    left = b.reshape(h, (2, 2))
    right = b.reshape(b.sin(_mix(b, h, rng)), (2, 2))
    return b.reshape(b.matmul(left, right), (WIDTH,))


def _mix(b: GraphBuilder, h: Var, rng: random.Random) -> Var:
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    w = torch.randn(WIDTH, h.shape[0], generator=gen, dtype=torch.float64) / h.shape[0] ** 0.5
    return b.linear(h, w, torch.randn(WIDTH, generator=gen, dtype=torch.float64) * 0.2)


def layer_kinds() -> dict[str, Callable[[GraphBuilder, Var, random.Random], Var]]:
    """One layer builder per registered nonlinear op (new ops are picked up automatically)."""
    kinds = {n: _unary(n) for n, op in REGISTRY.items() if op.kind == "nonlinear" and op.arity == 1}
    kinds["mul"] = _mul
    kinds["matmul"] = _matmul
    return kinds


def random_graph(seed: int, depth: int = 5, force: str | None = None, n_in: int = 3) -> Graph:
    """A depth-``depth`` graph of mixing layers and random nonlinear layers (``force`` among them), with
    skip connections (add / sub / concat+gather) between layers."""
    rng = random.Random(seed)
    kinds = layer_kinds()
    names = [rng.choice(sorted(kinds)) for _ in range(depth)]
    if force is not None:
        names[rng.randrange(depth)] = force
    b = GraphBuilder()
    x = b.input("x", (n_in,))
    h, history = _mix(b, x, rng), []
    for name in names:
        nxt = kinds[name](b, _mix(b, h, rng), rng)
        if history and rng.random() < 0.5:
            skip = rng.choice(history)
            nxt = rng.choice([nxt + skip, nxt - skip, b.concat([nxt, skip])[[0, 5, 2, 7]]])
        history.append(nxt)
        h = nxt
    y = b.linear(b.concat([h, history[0]]), torch.randn(3, 2 * WIDTH, dtype=torch.float64))
    return b.build({"y": y})


def random_box(seed: int, n_in: int = 3, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes of assorted widths: one zero-width, one tiny, the rest up to 1 wide."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(batch, n_in, generator=gen, dtype=torch.float64) * 2 - 1
    width = torch.rand(batch, n_in, generator=gen, dtype=torch.float64)
    width[0] = 0.0
    if batch > 1:
        width[1] = 1e-9
    return centre - width / 2, centre + width / 2


def sample_box(lower: torch.Tensor, upper: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """(B, n + corners, n_in) points of each box: random points and all corners (n_in <= 4)."""
    gen = torch.Generator().manual_seed(seed)
    batch, dim = lower.shape
    t = torch.rand(batch, n, dim, generator=gen, dtype=lower.dtype)
    corners = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=lower.dtype)] * dim).reshape(-1, dim)
    t = torch.cat([t, corners.expand(batch, -1, -1)], dim=1)
    return lower.unsqueeze(1) + t * (upper - lower).unsqueeze(1)

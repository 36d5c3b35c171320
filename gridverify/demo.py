"""A small self-contained bound computation: the default job until `gridverify verify` lands.

It builds the polar power-flow expression of one line, ``p = vm_i*vm_j*(g*cos(va_i - va_j) +
b*sin(va_i - va_j))``, behind a tiny sigmoid network that maps two loads to voltages and angles, and bounds
``p`` over a load box with IBP, CROWN and alpha-CROWN, checking each bound against samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from gridverify.bounds import AlphaConfig, BoundResult, alpha_crown, crown, ibp
from gridverify.ir import Graph, GraphBuilder


@dataclass(frozen=True)
class DemoRow:
    method: str
    lower: float
    upper: float
    seconds: float


def demo_graph(seed: int = 0) -> Graph:
    """loads (2,) -> sigmoid MLP -> (vm_i, vm_j, va_i, va_j) -> active power flow on one line (pu)."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    loads = b.input("loads", (2,))
    h = b.sigmoid(b.linear(loads, torch.randn(16, 2, generator=gen, dtype=torch.float64)))
    out = b.sigmoid(b.linear(h, torch.randn(4, 16, generator=gen, dtype=torch.float64) * 0.5))
    vm = 0.94 + 0.12 * out[:2]  # voltages squashed into [0.94, 1.06] pu
    va = 0.6 * out[2:] - 0.3  # angles in [-0.3, 0.3] rad
    g_pu, b_pu = 1.5, -8.0
    dva = va[0] - va[1]
    p = vm[0] * vm[1] * (g_pu * b.cos(dva) + b_pu * b.sin(dva)) - g_pu * vm[0] * vm[0]
    return b.build({"p_from": p})


def run_demo(radius: float = 0.1) -> list[DemoRow]:
    """Bound p_from on the load box [0.5 +- radius]^2 with each method."""
    graph = demo_graph()
    lo = torch.full((1, 2), 0.5 - radius, dtype=torch.float64)
    hi = torch.full((1, 2), 0.5 + radius, dtype=torch.float64)
    rows = []
    for name, method in (("IBP", ibp), ("CROWN", crown), ("alpha-CROWN", _alpha)):
        start = time.monotonic()
        r: BoundResult = method(graph, (lo, hi))
        rows.append(DemoRow(name, float(r.lower.min()), float(r.upper.max()), time.monotonic() - start))
    xs = lo + (hi - lo) * torch.rand(20000, 2, dtype=torch.float64)
    ys = graph.forward(xs)["p_from"]
    rows.append(DemoRow("sampled (20000)", float(ys.min()), float(ys.max()), 0.0))
    return rows


def _alpha(graph: Graph, box: tuple[torch.Tensor, torch.Tensor]) -> BoundResult:
    return alpha_crown(graph, box, config=AlphaConfig(steps=60))


def format_rows(rows: list[DemoRow]) -> str:
    lines = [f"{'method':<16}{'lower':>12}{'upper':>12}{'width':>12}{'seconds':>10}"]
    for r in rows:
        lines.append(
            f"{r.method:<16}{r.lower:>12.5f}{r.upper:>12.5f}{r.upper - r.lower:>12.5f}{r.seconds:>10.3f}"
        )
    return "\n".join(lines)

"""Bound tightness and cost of IBP, CROWN and alpha-CROWN on MLPs and a product-heavy graph.

Prints, per graph, the mean bound width of each method and their times, and the ratios
CROWN/IBP and alpha/CROWN (width and time), all measured in this process on the same boxes.

    python bench/bounds.py [--widths 32 64 128 256] [--alpha-steps 20] [--eps 0.05]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from gridverify.bounds import AlphaConfig, alpha_crown, crown, ibp
from gridverify.ir import Graph, GraphBuilder

ACTIVATIONS = ("relu", "sigmoid", "tanh", "sin", "gelu")
N_IN, N_OUT, DEPTH = 8, 4, 3


def mlp(act: str, width: int, seed: int = 0) -> Graph:
    """DEPTH hidden layers of ``width`` with He/Xavier-like scaling."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    h = b.input("x", (N_IN,))
    n = N_IN
    for _ in range(DEPTH):
        w = torch.randn(width, n, generator=gen, dtype=torch.float64) * (2.0 / n) ** 0.5
        h = b.apply(act, b.linear(h, w, torch.randn(width, generator=gen, dtype=torch.float64) * 0.1))
        n = width
    return b.build({"y": b.linear(h, torch.randn(N_OUT, n, generator=gen, dtype=torch.float64) / n**0.5)})


def product_graph(width: int, seed: int = 0) -> Graph:
    """A power-flow-like graph: p_k = v_i v_j (g cos(t_i - t_j) + b sin(t_i - t_j)) over random pairs."""
    gen = torch.Generator().manual_seed(seed)
    b = GraphBuilder()
    x = b.input("x", (N_IN,))
    h = b.sigmoid(b.linear(x, torch.randn(2 * width, N_IN, generator=gen, dtype=torch.float64)))
    v, t = 0.9 + 0.2 * h[:width], h[width:] - 0.5
    i, j = torch.randint(0, width, (2, 2 * width), generator=gen)
    dt = t[i] - t[j]
    g_pu, b_pu = (
        torch.rand(2 * width, generator=gen, dtype=torch.float64),
        -5 * torch.rand(2 * width, generator=gen, dtype=torch.float64),
    )
    p = v[i] * v[j] * (b.cos(dt) * g_pu + b.sin(dt) * b_pu)
    return b.build(
        {"y": b.linear(p, torch.randn(N_OUT, 2 * width, generator=gen, dtype=torch.float64) / width)}
    )


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(graph: Graph, eps: float, alpha_steps: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(1)
    centre = torch.rand(2, N_IN, generator=gen, dtype=torch.float64)
    box = (centre - eps, centre + eps)
    out = {}
    for name, fn in (
        ("ibp", lambda: ibp(graph, box)),
        ("crown", lambda: crown(graph, box)),
        ("alpha", lambda: alpha_crown(graph, box, config=AlphaConfig(steps=alpha_steps))),
    ):
        r, secs = _timed(fn)
        out[f"{name}_w"] = float((r.upper - r.lower).mean())  # type: ignore[attr-defined]
        out[f"{name}_s"] = secs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--alpha-steps", type=int, default=20)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crown(
        mlp("relu", 8), (torch.zeros(1, N_IN, dtype=torch.float64), torch.ones(1, N_IN, dtype=torch.float64))
    )
    header = (
        "| graph | IBP width | CROWN width | alpha width | CROWN/IBP | alpha/CROWN "
        "| IBP s | CROWN s | alpha s | CROWN/IBP time | alpha/CROWN time |"
    )
    print(
        f"eps={args.eps}, boxes: 2, alpha steps: {args.alpha_steps}, float64, "
        f"{torch.get_num_threads()} threads"
    )
    print(header)
    print("|" + "---|" * 11)
    graphs = [(f"{a} mlp {w}x{DEPTH}", lambda a=a, w=w: mlp(a, w)) for a in ACTIVATIONS for w in args.widths]
    graphs += [(f"products {w}", lambda w=w: product_graph(w)) for w in args.widths]
    for name, make in graphs:
        m = measure(make(), args.eps, args.alpha_steps)
        print(
            f"| {name} | {m['ibp_w']:.4g} | {m['crown_w']:.4g} | {m['alpha_w']:.4g} "
            f"| {m['crown_w'] / m['ibp_w']:.3g} | {m['alpha_w'] / m['crown_w']:.3g} "
            f"| {m['ibp_s']:.3f} | {m['crown_s']:.3f} | {m['alpha_s']:.2f} "
            f"| {m['crown_s'] / m['ibp_s']:.1f} | {m['alpha_s'] / m['crown_s']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""The GenBaB paper's network families, generated and trained here (no downloads), small enough for a CPU:

- MLPs with sigmoid, tanh, sin and GeLU activations (``--depth`` x ``--width``), trained for a few hundred
  Adam steps on a synthetic 10-class task (Gaussian clusters around random centres in ``--n-in`` dims);
- an LSTM cell unrolled ``--steps`` times (products of sigmoid and tanh gates) on the same task, the input
  read as a sequence of chunks;
- a one-block ViT-like model: tokens from chunks of the input, one softmax attention head (products of
  two variable tensors and softmax), a ReLU MLP, mean over tokens.

Properties: L-inf robustness at correctly classified test points, ``y_j - y_true < 0`` for every other
class j (one specification per class, VNN-LIB's closed unsafe set ``y_j >= y_true``), radius ``--eps``.
Each family is run with the variants of ``bench/bab.py`` (alpha-CROWN only; BaB with width choice; BBPS;
BBPS with pre-optimised branching points; filtered BBPS with branching points), the same budget per
property and variant, all in this process (the machine is shared: compare within one run). A property
counts as verified when all its specifications are; ``violated`` counts properties with a counterexample
(checked in float64), which no sound variant may ever prove.

    python bench/families.py [--points 5] [--timeout 5] [--eps 0.02] [--only sigmoid] [--variants abde]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from bab import VARIANTS

from gridverify.bab import SearchConfig, Verdict, maximise
from gridverify.ir import Graph
from gridverify.ir.from_torch import from_torch

N_CLASSES = 10


def task(n_in: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of 10 Gaussian clusters in ``[0, 1]^n_in`` (centres fixed by seed 0)."""
    centres = torch.rand(N_CLASSES, n_in, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, N_CLASSES, (n,), generator=gen)
    x = centres[labels] + 0.12 * torch.randn(n, n_in, generator=gen, dtype=torch.float64)
    return x.clamp(0.0, 1.0), labels


class Sin(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x)


ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "sin": Sin, "gelu": nn.GELU}


def mlp(act: str, n_in: int, width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = []
    n = n_in
    for _ in range(depth):
        layers += [nn.Linear(n, width), ACTIVATIONS[act]()]
        n = width
    return nn.Sequential(*layers, nn.Linear(n, N_CLASSES))


class LSTMCell(nn.Module):
    """An LSTM cell over ``steps`` chunks of the input: gates sigmoid, candidate tanh, state products."""

    def __init__(self, n_in: int, hidden: int, steps: int) -> None:
        super().__init__()
        self.steps, self.chunk, self.hidden = steps, n_in // steps, hidden
        self.gates = nn.Linear(self.chunk + hidden, 4 * hidden)
        self.out = nn.Linear(hidden, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x[:, : self.hidden] * 0.0  # zeros (the tracer has no new_zeros); needs n_in >= hidden
        c = h
        for t in range(self.steps):
            z = self.gates(torch.cat([x[:, t * self.chunk : (t + 1) * self.chunk], h], dim=1))
            i, f, g, o = (z[:, k * self.hidden : (k + 1) * self.hidden] for k in range(4))
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return self.out(h)


class TinyViT(nn.Module):
    """Tokens: ``tokens`` chunks of the input embedded to ``dim``; one softmax attention head with a
    residual, a ReLU MLP with a residual, the mean over tokens, a linear head."""

    def __init__(self, n_in: int, dim: int, tokens: int) -> None:
        super().__init__()
        self.tokens, self.chunk, self.dim = tokens, n_in // tokens, dim
        self.embed = nn.Linear(self.chunk, dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.head = nn.Linear(dim, N_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x.reshape(x.shape[0], self.tokens, self.chunk))
        att = torch.softmax(self.q(t) @ self.k(t).transpose(1, 2) / self.dim**0.5, dim=-1)
        t = t + att @ self.v(t)
        t = t + self.mlp(t)
        return self.head(t.mean(dim=1))


def train(model: nn.Module, n_in: int, steps: int) -> nn.Module:
    torch.manual_seed(0)
    model = model.double()
    x, y = task(n_in, 2000, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def families(args: argparse.Namespace) -> list[tuple[str, nn.Module]]:
    n, w, d = args.n_in, args.width, args.depth
    found = [(f"{a} mlp {d}x{w}", mlp(a, n, w, d)) for a in ACTIVATIONS]
    found.append((f"lstm {args.hidden}x{args.steps}", LSTMCell(n, args.hidden, args.steps)))
    found.append((f"vit 1 head {args.dim}d", TinyViT(n, args.dim, args.steps)))
    return found


def properties(model: nn.Module, n_in: int, points: int) -> list[tuple[torch.Tensor, int]]:
    """Correctly classified test points and their labels."""
    x, y = task(n_in, 200, seed=2)
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return [(x[i : i + 1], int(y[i])) for i in right.nonzero().squeeze(1)[:points].tolist()]


def spec_rows(label: int) -> torch.Tensor:
    rows = torch.eye(N_CLASSES, dtype=torch.float64)[[j for j in range(N_CLASSES) if j != label]]
    rows[:, label] = -1.0
    return rows


def run(
    graph: Graph, point: torch.Tensor, label: int, eps: float, variant: dict | None, timeout: float
) -> str:
    """``verified``, ``violated`` or ``unknown`` for one robustness property."""
    cfg = SearchConfig(timeout_s=timeout if variant else 0.0, input_split_max_dims=0)
    if variant:
        cfg = replace(cfg, **variant)
    box = ((point - eps).clamp(0.0, 1.0), (point + eps).clamp(0.0, 1.0))
    res = maximise(graph, box, spec_rows(label), threshold=0.0, config=cfg, closed=True)
    if any(r.verdict is Verdict.VIOLATED for r in res):
        return "violated"
    return "verified" if all(r.verdict is Verdict.VERIFIED for r in res) else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--points", type=int, default=5, help="properties per family")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per property and variant")
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--n-in", type=int, default=15)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="LSTM steps = ViT tokens")
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--only", default="")
    parser.add_argument("--variants", default="abde", help="letters of bench/bab.py's variants")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {k: v for k, v in VARIANTS.items() if k[0] in args.variants}
    totals = {k: [0, 0, 0.0] for k in variants}
    n_props = 0
    print(f"| family (accuracy) | {' | '.join(variants)} |\n|---|" + "---|" * len(variants))
    for name, module in families(args):
        if args.only not in name:
            continue
        model = train(module, args.n_in, args.train_steps)
        x, y = task(args.n_in, 200, seed=2)
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).double().mean())
        graph = from_torch(model, (args.n_in,))
        props = properties(model, args.n_in, args.points)
        n_props += len(props)
        cells = []
        for key, variant in variants.items():
            start = time.perf_counter()
            verdicts = [run(graph, p, label, args.eps, variant, args.timeout) for p, label in props]
            secs = time.perf_counter() - start
            verified, violated = verdicts.count("verified"), verdicts.count("violated")
            totals[key][0] += verified
            totals[key][1] += violated
            totals[key][2] += secs
            cells.append(f"{verified}/{len(props)} ({violated} sat) in {secs:.1f} s")
        print(f"| {name} ({accuracy:.2f}) | {' | '.join(cells)} |", flush=True)
    print(f"| total | {' | '.join(f'{v}/{n_props} ({s} sat) in {t:.1f} s' for v, s, t in totals.values())} |")


if __name__ == "__main__":
    main()

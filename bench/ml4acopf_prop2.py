"""Why ml4acopf 118_ieee_prop2 needs boundary-neuron tightening (`gridverify.bab.tighten`): the surrogate
MLP's bounds on the three values the thermal residual of branch 101 reads (angle difference theta, and the
pre-sigmoid outputs z_f, z_t behind the two voltage magnitudes), certified vs sampled, and what branch and
bound on theta alone buys.

The property asks ``thrm_1[101] < 0.0793`` over loads +-10 %; the sampled maximum is about -55.6, so the
margin is wide, yet alpha-CROWN's ranges of theta and z are 10-20x the sampled ones. With the voltages at
their full sigmoid range, the exact maximum of the residual over a box of theta reaches 0.0793 once theta may
exceed about 0.165 rad; with z_t >= 0.3 (v_t >= 1.01), theta <= 0.2 suffices, which relu branch and bound on
theta and z_t reaches in seconds.

    python bench/ml4acopf_prop2.py [--folder DIR] [--bab-seconds 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from ml4acopf import DEFAULT

from gridverify.bab import SearchConfig, maximise
from gridverify.bounds.alpha import AlphaConfig, alpha_crown
from gridverify.bounds.crown import resolve
from gridverify.ir import from_onnx
from gridverify.specs import read_vnnlib
from gridverify.vnncomp import _box

BRANCH = 101  # thrm_1[101] is Y_1189


def _index(graph, node: int) -> torch.Tensor:
    return graph.nodes[node].kwargs["index"].tensor.long()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--bab-seconds", type=float, default=60.0)
    args = parser.parse_args()
    onnx, prop = args.folder / "onnx/118_ieee_ml4acopf.onnx", args.folder / "vnnlib/118_ieee_prop2.vnnlib"
    if not onnx.exists():
        print(f"no benchmark at {args.folder}: nothing to run", file=sys.stderr)
        raise SystemExit(2)
    torch.set_num_threads(1)
    graph = from_onnx(onnx)
    box = _box(graph, read_vnnlib(prop))
    graph, _, _ = resolve(graph, box, None)
    # node 7: the MLP's last layer; 8/13 gather its sigmoid-squashed and its angle rows; 19/20 vm and va by
    # bus; 24/25 vm at the branch ends; 21/22 va at the branch ends (theta = node 23 = 21 - 22)
    i8, i13, i19, i20 = (_index(graph, n) for n in (8, 13, 19, 20))
    squashed = i8.numel()
    va_f = int(i13[int(i20[int(_index(graph, 21)[BRANCH])]) - squashed])
    va_t = int(i13[int(i20[int(_index(graph, 22)[BRANCH])]) - squashed])
    z_f = int(i8[int(i19[int(_index(graph, 24)[BRANCH])])])
    z_t = int(i8[int(i19[int(_index(graph, 25)[BRANCH])])])
    mlp = replace(graph, outputs=(("mlp", 7),))
    rows = {"theta": {va_f: 1.0, va_t: -1.0}, "z_f": {z_f: 1.0}, "z_t": {z_t: 1.0}}
    spec = torch.zeros(2 * len(rows), graph.nodes[7].size, dtype=torch.float64)
    for k, coef in enumerate(rows.values()):
        for j, v in coef.items():
            spec[2 * k, j], spec[2 * k + 1, j] = v, -v
    start = time.perf_counter()
    certified = alpha_crown(mlp, box, "mlp", spec, AlphaConfig(steps=100, lr=0.1, patience=1000)).upper[0]
    alpha_s = time.perf_counter() - start
    x = box[0] + (box[1] - box[0]) * torch.rand(20000, box[0].shape[1], dtype=torch.float64)
    sampled = mlp.forward(x)["mlp"] @ spec.T
    print(f"| value | alpha-CROWN ({alpha_s:.1f} s) | sampled (20000 loads) |\n|---|---|---|")
    for k, name in enumerate(rows):
        lo, hi = -float(certified[2 * k + 1]), float(certified[2 * k])
        s_lo, s_hi = float(sampled[:, 2 * k].min()), float(sampled[:, 2 * k].max())
        print(f"| {name} | [{lo:.3f}, {hi:.3f}] | [{s_lo:.3f}, {s_hi:.3f}] |")
    cfg = SearchConfig(timeout_s=args.bab_seconds, root=AlphaConfig(steps=20), refresh_intermediate=True)
    (r,) = maximise(mlp, box, spec[:1], output="mlp", config=cfg)
    trace = ", ".join(f"{t:.0f} s: {u:.4f}" for t, u in r.history[:: max(1, len(r.history) // 6)])
    print(f"\nmax theta by branch and bound ({args.bab_seconds:.0f} s, relu splits, refreshed intervals):")
    print(f"certified <= {r.upper:.4f} after {r.domains} domains (found {r.worst:.4f}); {trace}")


if __name__ == "__main__":
    main()

"""Training for verifiability: a shipped case's surrogate against one trained with the relu-stability penalty
(`TrainConfig.stability_weight`), both verified by `gridverify verify` with the same budget in this process.

The second surrogate has the shipped one's architecture, data settings and seed; only the penalty (and
``--epochs``) differ. Its labels come from the default AC-OPF labeller (cached as `gridverify train` caches
them). Printed per surrogate: held-out accuracy (MAE of pg, balance residual mean / max of the surrogate's
own dispatch), unstable relus over the region (interval arithmetic), and the verdict counts, thermal
unknowns, the median over balance rows of certified bound / worst found, and the wall time of `verify`.

    python bench/stability.py case30 [--weight 0.001] [--epochs 1000] [--timeout 120]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from verify import balance_ratio  # bench/verify.py, beside this script

from gridverify.surrogate.case import load_case
from gridverify.surrogate.dataset import DatasetConfig, generate
from gridverify.surrogate.train import TrainConfig, train_surrogate
from gridverify.verify import VerifyConfig, verify


def row(label: str, case, metrics: dict, timeout: float) -> str:
    start = time.perf_counter()
    cert = verify(case, config=VerifyConfig(timeout_s=timeout, replay=False))
    wall = time.perf_counter() - start
    counts = cert.counts()
    thermal = sum(1 for r in cert.records if r.family.startswith("thermal") and r.verdict == "unknown")
    unstable = case.surrogate.unstable_relus()
    return (
        f"| {label} | {metrics['mae_pg_pu']:.2g} | {metrics['balance_residual_mean_pu']:.2g} "
        f"| {metrics['balance_residual_max_pu']:.2g} | {unstable} | {counts['verified']} "
        f"| {counts['violated']} | {counts['unknown']} | {thermal} | {balance_ratio(cert):.3g} | {wall:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("case", help="a shipped case (case14, case30, ...)")
    parser.add_argument("--weight", type=float, default=1e-3, help="stability_weight (default 0.001)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the case's)")
    parser.add_argument("--timeout", type=float, default=120.0, help="verify budget per surrogate (s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    case = load_case(args.case)
    config = replace(TrainConfig.of(case), stability_weight=args.weight)
    config = replace(config, epochs=args.epochs) if args.epochs else config
    data = {**case.definition.data, "seed": case.definition.seed, "labeller": "ipopt"}
    dataset = generate(case.source, case.region, DatasetConfig(**data))
    start = time.perf_counter()
    model, metrics = train_surrogate(case, dataset, config)
    seconds = time.perf_counter() - start
    print(f"{args.case}: trained with stability_weight {args.weight:g} in {seconds:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / case.folder.name
        shutil.copytree(case.folder, folder)
        torch.save({"config": model.config(), "state_dict": model.state_dict()}, folder / "surrogate.pt")
        stable = load_case(folder)
        head = "| surrogate | MAE pg | balance mean | balance max | unstable relus | verified | violated "
        print(head + "| unknown | thermal unknown | balance bound/found | verify s |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print(row("shipped", case, case.metrics, args.timeout))
        print(row(f"stability_weight {args.weight:g}", stable, metrics, args.timeout))


if __name__ == "__main__":
    main()

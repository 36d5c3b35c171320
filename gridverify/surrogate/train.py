"""Train a case's surrogate from its ``case.toml`` and write ``surrogate.pt``, ``metrics.json`` and
``README.md`` into the case folder.

    python -m gridverify.surrogate.train case14            # or a path to a case folder
    gridverify train pglib_opf_case39_epri.m --out case39  # a grid file: writes the case folder first

Steps: draw ``[data] samples`` loads uniformly in the case's region (the same box that `load_case` gives as
the default verification region, so verification never leaves the training distribution), solve each
AC-OPF (`gridverify.surrogate.dataset`: IPOPT by default, PYPOWER's ``runopf`` with ``labeller = "runopf"``),
split off ``test_fraction`` for testing, set the output
ranges (pg, qg, vm: the case's limits; va: per bus, the training angles widened by ``va_margin_rad``; the
reference bus fixed), and fit with Adam on the squared error of each output relative to its range, plus
optionally ``physics_weight`` times the mean squared power-balance residual of the compiled constraint graph.
Metrics are measured on the held-out samples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from gridverify.grid.acopf import AcopfProblem, Kind, compile_acopf
from gridverify.grid.data import GridData
from gridverify.grid.net import GRID_SUFFIXES
from gridverify.ir.graph import Graph
from gridverify.surrogate.case import CaseDefinition, CaseFolder, load_case, write_case_folder
from gridverify.surrogate.dataset import Dataset, DatasetConfig, generate
from gridverify.surrogate.model import DISPATCH, AcopfSurrogate, Layout

__all__ = ["TrainConfig", "evaluate", "fit", "output_ranges", "train_case", "train_surrogate"]


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and optimiser settings (``[architecture]`` and ``[training]`` of ``case.toml``)."""

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    epochs: int = 500
    batch_size: int = 64
    learning_rate: float = 3e-3
    test_fraction: float = 0.2
    va_margin_rad: float = 0.05
    physics_weight: float = 0.0
    # weight of `AcopfSurrogate.relu_gap` (relu neurons unstable over the region), ramped in over the first
    # quarter of the epochs: a surrogate that verification decides, at some cost in accuracy (README)
    stability_weight: float = 0.0
    seed: int = 0

    @classmethod
    def of(cls, case: CaseFolder) -> TrainConfig:
        given = {**case.definition.architecture, **case.definition.training, "seed": case.definition.seed}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"case {case.name}: unknown training settings {unknown}; known: {sorted(known)}")
        if "hidden" in given:
            given["hidden"] = tuple(int(h) for h in given["hidden"])
        return cls(**given)


# -- the model's ranges --------------------------------------------------------------------------------
def output_ranges(data: GridData, train: Dataset, layout: Layout, va_margin_rad: float) -> tuple[Any, Any]:
    """Squash ranges (K,) in ``layout`` order: the case's limits for pg, qg, vm (where infinite: the data's
    range widened by half of it, at least 0.1 pu); va per bus from the data, the reference bus fixed."""
    g, b = data.gens, data.buses
    limits = {
        "pg_pu": (g.pmin_pu, g.pmax_pu),
        "qg_pu": (g.qmin_pu, g.qmax_pu),
        "vm_pu": (b.vmin_pu, b.vmax_pu),
        "va_rad": _angle_range(data, train.va_rad, va_margin_rad),
    }
    lower, upper = [], []
    for name, _ in layout.outputs:
        lo, hi = limits[name]
        values = getattr(train, name)
        pad = np.maximum((values.max(0) - values.min(0)) / 2, 0.1)
        lower.append(np.where(np.isfinite(lo), lo, values.min(0) - pad))
        upper.append(np.where(np.isfinite(hi), hi, values.max(0) + pad))
    return np.concatenate(lower), np.concatenate(upper)


def _angle_range(data: GridData, va: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = va.min(0) - margin, va.max(0) + margin
    lo[data.buses.ref], hi[data.buses.ref] = data.buses.ref_va_rad, data.buses.ref_va_rad
    return lo, hi


def build_model(data: GridData, train: Dataset, region_center: Any, region_radius: Any,
                config: TrainConfig) -> AcopfSurrogate:  # fmt: skip
    layout = Layout.of(data)
    torch.manual_seed(config.seed)
    model = AcopfSurrogate(layout, config.hidden, config.activation)
    model.set_scaling(region_center, region_radius, *output_ranges(data, train, layout, config.va_margin_rad))
    return model


# -- fitting -------------------------------------------------------------------------------------------
def _balance_loss(graph: Graph, model: AcopfSurrogate, load: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = load.shape[1] // 2
    out = graph.forward({**model.layout.split(y), "pd_pu": load[:, :d], "qd_pu": load[:, d:]})
    assert isinstance(out, dict)
    return (out["p_balance"].square().mean() + out["q_balance"].square().mean()) / 2


def fit(
    model: AcopfSurrogate, train: Dataset, config: TrainConfig, graph: Graph | None = None
) -> list[float]:
    """Adam with cosine decay on the range-relative squared error (and the balance loss when ``graph`` is
    given and ``physics_weight > 0``; the relu gap with ``stability_weight > 0``). Returns the mean loss of
    each epoch. Leaves ``model`` in eval mode."""
    x = torch.as_tensor(train.load)
    y = torch.as_tensor(train.target(tuple(n for n, _ in model.layout.outputs)))
    span = (model.upper - model.lower).detach()
    weight = torch.where(span > 0, 1.0 / span.clamp_min(1e-12), torch.zeros_like(span))
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * math.ceil(len(x) / config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(steps, 1), eta_min=config.learning_rate / 100
    )
    generator = torch.Generator().manual_seed(config.seed)
    history, model = [], model.train()
    ramp = max(config.epochs // 4, 1)
    for epoch in range(config.epochs):
        total = 0.0
        for rows in torch.randperm(len(x), generator=generator).split(config.batch_size):
            pred = model(x[rows])
            loss = ((pred - y[rows]) * weight).square().mean()
            if graph is not None and config.physics_weight > 0:
                loss = loss + config.physics_weight * _balance_loss(graph, model, x[rows], pred)
            if config.stability_weight > 0:
                loss = loss + config.stability_weight * min(1.0, epoch / ramp) * model.relu_gap()
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            total += float(loss.detach()) * len(rows)
        history.append(total / len(x))
    model.eval()
    return history


# -- metrics -------------------------------------------------------------------------------------------
def evaluate(
    model: AcopfSurrogate, problem: AcopfProblem, test: Dataset, graph: Graph | None = None
) -> dict[str, Any]:
    """Held-out errors: MAE of each output (pu / rad), power-balance residuals of the surrogate's dispatch
    (and, for scale, of the OPF's own), and the largest violation of each inequality family."""
    graph = graph or compile_acopf(problem)
    x = torch.as_tensor(test.load)
    with torch.no_grad():
        pred = model.dispatch(x)
        out = graph.forward({**pred, "pd_pu": x[:, : x.shape[1] // 2], "qd_pu": x[:, x.shape[1] // 2 :]})
        opf = graph.forward(_feeds(test))
    assert isinstance(out, dict) and isinstance(opf, dict)
    metrics: dict[str, Any] = {
        f"mae_{n}": float((pred[n] - torch.as_tensor(getattr(test, n))).abs().mean()) for n in DISPATCH
    }
    balance = torch.cat([out["p_balance"].abs(), out["q_balance"].abs()], 1)
    metrics |= {
        "balance_residual_mean_pu": float(balance.mean()),
        "balance_residual_max_pu": float(balance.max()),
    }
    metrics["opf_balance_residual_max_pu"] = float(
        torch.cat([opf["p_balance"], opf["q_balance"]], 1).abs().max()
    )
    inequalities = [f for f in problem.families if problem.family(f)[0].kind is Kind.INEQUALITY]
    metrics["violation_max"] = {f: float(out[f].clamp_min(0).max()) for f in inequalities}
    return metrics


def _feeds(ds: Dataset) -> dict[str, torch.Tensor]:
    d = ds.load.shape[1] // 2
    feeds = {n: torch.as_tensor(getattr(ds, n)) for n in DISPATCH}
    return feeds | {"pd_pu": torch.as_tensor(ds.load[:, :d]), "qd_pu": torch.as_tensor(ds.load[:, d:])}


# -- a whole case ----------------------------------------------------------------------------------------
def train_surrogate(
    case: CaseFolder, dataset: Dataset, config: TrainConfig
) -> tuple[AcopfSurrogate, dict[str, Any]]:
    """Split, fit and measure; returns the model and its metrics."""
    order = np.random.default_rng(config.seed).permutation(len(dataset))
    n_test = max(1, round(config.test_fraction * len(dataset)))
    train, test = dataset.subset(order[n_test:]), dataset.subset(order[:n_test])
    model = build_model(case.data, train, case.region.center, case.region.radius, config)
    graph = compile_acopf(case.problem)
    start = time.monotonic()
    history = fit(model, train, config, graph)
    seconds = time.monotonic() - start
    metrics = evaluate(model, case.problem, test, graph)
    counts = {"samples": len(dataset) + dataset.failed, "converged": len(dataset),
              "non_converged": dataset.failed, "train": len(train), "test": len(test)}  # fmt: skip
    timing = {"data_seconds": round(dataset.seconds, 1), "training_seconds": round(seconds, 1)}
    return model, {
        **metrics,
        **counts,
        **timing,
        "final_loss": history[-1],
        "unstable_relus": model.unstable_relus(),
        "fingerprint": model.fingerprint(),
    }


def train_case(name_or_path: str | Path, data_config: DatasetConfig | None = None) -> dict[str, Any]:
    """Generate (or read the cached) data, train, and write the case's surrogate, metrics and README."""
    torch.set_num_threads(1)
    case = load_case(name_or_path)
    config = TrainConfig.of(case)
    base = data_config or DatasetConfig()
    known = set(base.__dict__) - {"seed", "cache_dir", "progress"}
    unknown = sorted(set(case.definition.data) - known)
    if unknown:
        raise ValueError(f"case {case.name}: unknown [data] settings {unknown}; known: {sorted(known)}")
    data_config = DatasetConfig(**{**base.__dict__, **case.definition.data, "seed": case.definition.seed})
    dataset = generate(case.source, case.region, data_config)
    model, metrics = train_surrogate(case, dataset, config)
    metrics["labeller"] = data_config.labeller
    weights = {"config": model.config(), "state_dict": model.state_dict()}
    _write_atomic(case.folder / "surrogate.pt", lambda f: torch.save(weights, f))
    _write_atomic(
        case.folder / "metrics.json", lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode())
    )
    readme = _readme(case, metrics, config, data_config.labeller)
    _write_atomic(case.folder / "README.md", lambda f: f.write(readme.encode()))
    return metrics


def _write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` into a temporary file beside ``path``, then rename: an interrupted run leaves the old file
    whole, never half of the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _readme(case: CaseFolder, m: dict[str, Any], config: TrainConfig, labeller: str) -> str:
    pglib = case.definition.source.startswith("pglib_opf_")
    return README.format(
        name=case.folder.name, source=case.definition.source, region=case.definition.region,
        grid=f"PGLib-OPF `{case.definition.source}` (CC BY 4.0, header kept in the file)" if pglib
        else f"Grid `{case.definition.source}`",
        solver=LABELLER_TEXT[labeller],
        describe=case.region.describe(), hidden=" x ".join(map(str, config.hidden)), act=config.activation,
        table="\n".join(f"| {k} | {_fmt(v)} |" for k, v in m.items() if not isinstance(v, dict)),
        violations="\n".join(f"| {k} | {_fmt(v)} |" for k, v in m["violation_max"].items()),
    )  # fmt: skip


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


LABELLER_TEXT = {
    "ipopt": "IPOPT with exact derivatives (`gridverify.grid.opf`)",
    "runopf": "PYPOWER's AC-OPF (`runopf`)",
}

README = """# {name}

{grid} with a trained ACOPF surrogate
(`gridverify.surrogate.AcopfSurrogate`: MLP {hidden}, {act}, outputs squashed into their limits).

Region (the training region and the default verification region): `{region}`, {describe}.
Training loads are drawn uniformly in that same box (pd and qd independently) and their AC-OPF solved by
{solver}; loads where it does not converge are left out (`non_converged` below).

Regenerate (data cached under `~/.cache/gridverify/datasets`; metrics reproduce within noise):

    python -m gridverify.surrogate.train {name}

Use it:

```python
from gridverify.surrogate import load_case, compose
case = load_case("{name}")
graph = compose(case.problem, case.surrogate)      # input "load" (2D,) -> every ACOPF constraint
lower, upper = case.region.box()
```

## Metrics (held-out samples; pu, rad)

| metric | value |
|---|---|
{table}

Largest violation over the held-out samples, per inequality family (pu, or pu^2 for thermal limits):

| family | max violation |
|---|---|
{violations}
"""


GRID_OPTIONS = {  # option of `gridverify train GRID` -> its default
    "region": "+-10%", "samples": 2000, "hidden": "128x128", "epochs": 1000, "seed": 0, "labeller": "ipopt",
    "stability": 0.0,
}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """``gridverify train``: a grid file becomes a case folder first (`grid_case_folder`), then train."""
    cache = None if args.no_cache else args.cache_dir
    target: str | Path = args.case
    if Path(args.case).suffix.lower() in GRID_SUFFIXES:
        target = grid_case_folder(Path(args.case), args)
        print(f"gridverify train: case folder {target}", file=sys.stderr)
    else:
        given = [f"--{k}" for k in (*GRID_OPTIONS, "out") if getattr(args, k, None) is not None]
        if given:
            raise ValueError(f"{' '.join(given)}: for a grid file only; a case folder's settings are in its "
                             "case.toml")  # fmt: skip
    metrics = train_case(target, DatasetConfig(workers=args.workers, cache_dir=cache))
    print(json.dumps(metrics, indent=2))
    return 0


def grid_case_folder(grid: Path, args: argparse.Namespace) -> Path:
    """Write (or, rerun with the same settings, reuse) the case folder of a grid file: ``case.toml`` from
    the command's options (`GRID_OPTIONS` where not given) and a copy of the grid file."""
    opt = {
        k: default if getattr(args, k, None) is None else getattr(args, k)
        for k, default in GRID_OPTIONS.items()
    }
    if opt["samples"] < 10 or opt["epochs"] < 1 or opt["stability"] < 0:
        raise ValueError("--samples must be >= 10, --epochs >= 1 and --stability >= 0")
    definition = CaseDefinition(
        name=grid.stem, source=grid.name, region=str(opt["region"]), seed=int(opt["seed"]),
        architecture={"hidden": list(parse_hidden(opt["hidden"])), "activation": "relu"},
        data={"samples": int(opt["samples"]), "labeller": opt["labeller"]},
        training={"epochs": int(opt["epochs"]), "batch_size": 64, "learning_rate": 3e-3,
                  "test_fraction": 0.2, "stability_weight": float(opt["stability"])},
    )  # fmt: skip
    out = args.out if args.out is not None else Path(grid.stem)
    comment = f"Written by `gridverify train {grid.name}`; retrain with `gridverify train {out}`."
    return write_case_folder(grid, out, definition, comment)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"128x128"`` -> (128, 128); widths must be positive integers."""
    try:
        widths = tuple(int(w) for w in str(text).lower().replace(",", "x").split("x"))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise ValueError(f"--hidden {text!r} not understood: write widths joined by x, e.g. 128x128")
    return widths


# python -m gridverify.surrogate.train CASE ...: the same as gridverify train CASE ... (command code: the
# architecture test counts it with the command modules)
if __name__ == "__main__":
    from gridverify.cli import main

    raise SystemExit(main(["train", *sys.argv[1:]]))

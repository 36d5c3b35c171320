"""The VNN-COMP 2023 ml4acopf models through the ONNX front end: equal to onnxruntime on inputs inside every
VNN-LIB box of the model and on random inputs, and CROWN bounds on the 14-bus model that contain its
sampled outputs. Skipped when the shared data folder is absent."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gridverify.bounds import crown
from gridverify.ir.from_onnx import from_onnx
from gridverify.specs import read_vnnlib
from tests.ir.onnx_models import run_onnxruntime, to_double

CASES = ["14_ieee", "118_ieee", "300_ieee"]


def _properties(folder: Path, case: str) -> list[Path]:
    with open(folder / "instances.csv") as f:
        return sorted({folder / row[1] for row in csv.reader(f) if Path(row[0]).name.startswith(case + "_")})


def _samples(folder: Path, case: str, per_box: int) -> np.ndarray:
    """Inputs inside every VNN-LIB box of the model (corners included), then standard normal ones."""
    rng = np.random.default_rng(0)
    rows = []
    for path in _properties(folder, case):
        spec = read_vnnlib(path)
        width = spec.input_upper - spec.input_lower
        rows += [
            spec.input_lower,
            spec.input_upper,
            spec.input_lower + width * rng.random((per_box, width.size)),
        ]
    return np.vstack([*rows, rng.normal(size=(per_box, rows[0].shape[-1]))])


@pytest.mark.parametrize("case", CASES)
def test_matches_onnxruntime_in_every_box(ml4acopf: Path, case: str) -> None:
    model = onnx.load(str(ml4acopf / "onnx" / f"{case}_ml4acopf.onnx"))
    graph = from_onnx(model)
    assert len(graph.nodes) == 81  # measured 2026-11 for all three models (12 linear, 3 relu, 7 square, ...)
    x = _samples(ml4acopf, case, per_box=2)
    (name,), (out,) = [v.name for v in model.graph.input], [v.name for v in model.graph.output]
    got = graph.forward(torch.from_numpy(x))[out].numpy()
    (want64,) = run_onnxruntime(to_double(model), {name: x}, per_sample=True)
    assert np.abs(got - want64).max() <= 1e-12 * max(1.0, np.abs(want64).max())
    (want32,) = run_onnxruntime(model, {name: x.astype(np.float32)}, per_sample=True)
    assert np.abs(got - want32).max() <= 1e-5 * max(1.0, np.abs(want64).max())


def test_crown_bounds_the_14_bus_model(ml4acopf: Path) -> None:
    """CROWN over the box of 14_ieee_prop1 contains 2000 sampled outputs and the box corners."""
    graph = from_onnx(ml4acopf / "onnx" / "14_ieee_ml4acopf.onnx")
    spec = read_vnnlib(ml4acopf / "vnnlib" / "14_ieee_prop1.vnnlib")
    lower, upper = (torch.from_numpy(np.array(b))[None] for b in (spec.input_lower, spec.input_upper))
    result = crown(graph, (lower, upper))
    x = torch.cat([lower, upper, lower + (upper - lower) * torch.rand(2000, 22, dtype=torch.float64)])
    y = next(iter(graph.forward(x).values()))
    assert bool(torch.isfinite(result.lower).all() and torch.isfinite(result.upper).all())
    assert bool(((y >= result.lower) & (y <= result.upper)).all())
    assert float((result.upper - result.lower).max()) < 0.01  # measured 0.0016 (2026-11)

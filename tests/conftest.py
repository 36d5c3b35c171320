"""Shared test settings and fixtures.

One intra-op thread per test process: the suite runs under pytest-xdist (one process per core), and
OpenMP's barriers on oversubscribed cores turn microsecond reductions into milliseconds.

Third-party data (PGLib cases, VNN-COMP ml4acopf instances) is read from ``../shared/data`` next to the
repository and never copied into it; tests that need it skip cleanly where it is absent.
"""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _shared(name: str, marker: str) -> Path:
    path = SHARED_DATA / name
    if not (path / marker).exists():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def pglib_dir() -> Path:
    """``../shared/data/pglib`` (PGLib-OPF v23.07 ``.m`` cases)."""
    return _shared("pglib", "pglib_opf_case14_ieee.m")


@pytest.fixture(scope="session")
def ml4acopf() -> Path:
    """``../shared/data/ml4acopf_2023`` (VNN-COMP 2023 ml4acopf: instances.csv, onnx/, vnnlib/)."""
    return _shared("ml4acopf_2023", "instances.csv")

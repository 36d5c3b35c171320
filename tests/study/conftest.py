"""A small real study on the shipped case14: voltage-limit families over two load regions, 5 s per job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gridverify.surrogate.case import CASES_DIR
from tests.study.support import random_surrogate, write_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``study.toml``: case14 x {vm_min, vm_max} x {+-1%, +-5%} (4 jobs, each about a second of verify)."""
    folder = tmp_path_factory.mktemp("small_study")
    body = 'name = "small"\ncases = ["case14"]\nfamilies = ["vm_min", "vm_max"]\n'
    body += 'regions = ["+-1%", "+-5%"]\ntimeout_s = 5\n'
    if not (CASES_DIR / "case14" / "surrogate.pt").exists():  # until the trained surrogate is shipped
        body += f'surrogates = ["{random_surrogate(folder / "random.pt")}"]\n'
    return write_study(folder, body)


def child_env() -> dict[str, str]:
    """Environment of a ``python -m gridverify.study`` child: the repository importable, one thread."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

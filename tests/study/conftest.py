"""A small real study: the shipped case14 and its shipped surrogate, voltage-limit families, two regions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.study.support import write_study

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``study.toml``: case14 x {vm_min, vm_max} x {+-1%, +-5%} (4 jobs, each well under a second of verify
    on an idle core: the budget is there so that a loaded machine still decides every constraint, making
    the answers independent of timing)."""
    folder = tmp_path_factory.mktemp("small_study")
    body = 'name = "small"\ncases = ["case14"]\nfamilies = ["vm_min", "vm_max"]\n'
    body += 'regions = ["+-1%", "+-5%"]\ntimeout_s = 30\n'
    return write_study(folder, body)


def child_env() -> dict[str, str]:
    """Environment of a ``python -m gridverify.study`` child: the repository importable, one thread."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

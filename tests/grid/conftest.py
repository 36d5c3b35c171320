"""Fixtures of the grid tests: the shared PGLib folder (tests skip cleanly where ``../shared`` is absent)."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


@pytest.fixture(scope="session")
def pglib_dir() -> Path:
    """``../shared/data/pglib`` next to the repository (PGLib-OPF v23.07 ``.m`` cases)."""
    path = SHARED / "data" / "pglib"
    if not path.is_dir():
        pytest.skip(f"PGLib cases not found at {path}")
    return path

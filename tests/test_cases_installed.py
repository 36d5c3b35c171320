"""The shipped cases are package data: a wheel built from the project's files holds every case folder, and
an installation from it (not editable: nothing of this checkout on the path) finds and loads them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gridverify.surrogate import available_cases
from gridverify.surrogate.case import CASES_DIR

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [p for p in sorted(CASES_DIR.iterdir()) if (p / "case.toml").is_file()]


def _build_wheel(tmp_path: Path) -> Path:
    """``pip wheel`` of a copy of the project's files (the checkout stays free of build/ and egg-info)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "gridverify", source / "gridverify", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "cases", source / "cases", ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
               str(tmp_path / "dist"), str(source)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("gridverify-*.whl")
    return wheel


def test_a_wheel_holds_the_cases_and_an_install_from_it_finds_them(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="the wheel is built without build isolation (no network)")
    assert (REPO / "cases").resolve() == CASES_DIR and set(available_cases()) >= {"case14", "case118"}
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in SHIPPED:
        for f in folder.iterdir():
            if f.is_file():
                assert f"gridverify/cases/{folder.name}/{f.name}" in names, f
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    probe = (
        "import gridverify; from gridverify.surrogate import available_cases, load_case;"
        "from gridverify.surrogate.case import CASES_DIR; case = load_case('case14');"
        "print(gridverify.__file__); print(CASES_DIR); print(' '.join(available_cases()));"
        "print(case.folder); print(case.surrogate.fingerprint() == case.metrics['fingerprint'])"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    module, cases_dir, names_found, folder, same = done.stdout.split("\n")[:5]
    assert Path(module).is_relative_to(site) and Path(cases_dir).is_relative_to(site)
    assert names_found.split() == [p.name for p in SHIPPED]
    assert Path(folder) == Path(cases_dir) / "case14" and same == "True"


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_files_stay_small(folder: Path) -> None:
    """No large generated data in the package: each surrogate under 1 MB (case1354's 32 x 16 MLP over 1346
    inputs and 3228 outputs: 0.87 MB), each folder under 2 MB (case1354's: 1.5 MB with its 0.67 MB .m)."""
    sizes = {f.name: f.stat().st_size for f in folder.iterdir()}
    assert sizes.get("surrogate.pt", 0) < 1_000_000 and sum(sizes.values()) < 2_000_000, sizes

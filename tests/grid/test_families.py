"""The family table (`gridverify.grid.families`) against the constraints `build_acopf` writes: every
constraint's kind and element type are its family's, and reading the table imports nothing heavy."""

import subprocess
import sys

import pytest

from gridverify.grid.families import BALANCE, FAMILIES, NAMES, THERMAL, Kind, family, of_element
from tests.grid.cases import compiled, pandapower_case, pglib_case


@pytest.mark.parametrize("source", ["pglib", "pandapower"])
def test_every_constraint_has_its_familys_kind_and_element_type(source, pglib_dir):
    grid = (
        pglib_case(pglib_dir / "pglib_opf_case14_ieee.m") if source == "pglib" else pandapower_case("case14")
    )
    problem, _ = compiled(grid[0])
    ids = problem.data.ids
    kinds = {"bus": {"bus"}, "branch": set(ids.branch_kinds), "gen": set(ids.gen_kinds)}
    for c in problem.constraints:
        fam = family(c.family)
        assert c.kind is fam.kind, c.name
        assert c.element[0] in kinds[fam.element], c.name


def test_the_table_is_consistent():
    assert len(set(NAMES)) == len(FAMILIES) == 13
    assert set(BALANCE) | set(THERMAL) <= set(NAMES)
    assert all(family(b).kind is Kind.EQUALITY for b in BALANCE)
    assert all(family(t).unit == "pu^2" and family(t).element == "branch" for t in THERMAL)
    assert sum((of_element(e) for e in ("bus", "branch", "gen")), ()) == tuple(
        f.name for f in sorted(FAMILIES, key=lambda f: ("bus", "branch", "gen").index(f.element))
    )
    assert of_element("bus", ("ref_angle",)) == ("p_balance", "q_balance", "vm_min", "vm_max")
    with pytest.raises(ValueError, match="unknown constraint family 'nope'; known: p_balance"):
        family("nope")


def test_reading_the_table_imports_nothing_heavy():
    heavy = "{'sympy', 'pandapower', 'torch'}"
    code = f"import sys, gridverify.grid.families; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

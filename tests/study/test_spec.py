"""Study files: expansion into jobs with stable ids, and every kind of mistake reported before any job."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridverify.study import StudyError, load_study
from tests.study.support import random_surrogate, write_study


@pytest.fixture(scope="module")
def surrogate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_surrogate(tmp_path_factory.mktemp("surrogates") / "random.pt")


def _study(tmp_path: Path, surrogate: Path, **overrides: str) -> Path:
    fields = {
        "cases": '["case14"]',
        "surrogates": f'["{surrogate}"]',
        "families": '["vm_min", "thermal_from"]',
        "regions": '["+-1%", "+-5%", "0.9:1.1"]',
        "tolerances": "[1e-4, 1e-3]",
        "timeout_s": "5",
        **overrides,
    }
    return write_study(tmp_path, "".join(f"{k} = {v}\n" for k, v in fields.items() if v))


def test_every_combination_becomes_one_job_with_a_stable_id(tmp_path, surrogate):
    jobs = load_study(_study(tmp_path, surrogate))
    assert len(jobs) == 1 * 1 * 2 * 3 * 2
    assert len({j.id for j in jobs}) == len(jobs)
    again = load_study(_study(tmp_path, surrogate, regions='["0.9:1.1", "+-5%", "+-1%"]'))
    assert {j.id for j in again} == {j.id for j in jobs}  # order of the lists does not matter
    by_key = {(j.region, j.families, j.tolerance): j for j in jobs}
    assert by_key[("+-5%", ("vm_min",), 1e-3)].region_pct == pytest.approx(5.0)
    assert by_key[("0.9:1.1", ("vm_min",), 1e-3)].region_pct == pytest.approx(10.0)
    longer = load_study(_study(tmp_path, surrogate, timeout_s="6"))
    assert not {j.id for j in longer} & {j.id for j in jobs}  # another budget is another job


def test_unsplit_families_give_one_job_per_region(tmp_path, surrogate):
    jobs = load_study(_study(tmp_path, surrogate, tolerances="", split_families="false"))
    assert [j.families for j in jobs] == [("vm_min", "thermal_from")] * 3
    assert {j.tolerance for j in jobs} == {1e-4}


def test_a_surrogate_is_identified_by_its_file_not_its_name(tmp_path, surrogate):
    other = random_surrogate(tmp_path / "other.pt", seed=1)
    one = load_study(_study(tmp_path, surrogate))
    two = load_study(_study(tmp_path, surrogate, surrogates=f'["{surrogate}", "{other}"]'))
    assert {j.id for j in one} < {j.id for j in two}
    assert len(two) == 2 * len(one)


def _problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_every_problem_of_a_file_is_reported_at_once_with_where(tmp_path, surrogate):
    path = _study(
        tmp_path,
        surrogate,
        cases='["case14", "case99"]',
        families='["vm_min", "vm_mni"]',
        regions='["+-1%", "+-x%", "1.2:1.1"]',
    )
    problems = _problems(path)
    assert len(problems) == 4, problems
    assert any(p.startswith("cases[1] 'case99'") and "no case" in p for p in problems)
    assert any(p.startswith("families[1] 'vm_mni': unknown family") for p in problems)
    assert any("regions[1] '+-x%'" in p and "not understood" in p for p in problems)
    assert any("regions[2] '1.2:1.1'" in p and "lo > hi" in p for p in problems)


def test_two_entries_meaning_the_same_job_are_duplicate_ids(tmp_path, surrogate):
    problems = _problems(_study(tmp_path, surrogate, regions='["+-5%", "5%"]', tolerances=""))
    assert len(problems) == 2  # one per family
    assert all(p.startswith("duplicate job id") and "regions[1] '5%'" in p for p in problems)
    assert all("regions[0] '+-5%'" in p for p in problems)
    listed_twice = _problems(_study(tmp_path, surrogate, families='["vm_min", "vm_min"]'))
    assert any("families[1] 'vm_min': listed twice" in p for p in listed_twice)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"timeout_s": ""}, "missing key 'timeout_s'"),
        ({"timeout_s": "-1"}, "timeout_s: must be a positive number"),
        ({"timeout_s": '"60"'}, "timeout_s: expected a number"),
        ({"regions": '"+-5%"'}, "regions: expected a list"),
        ({"regions": "[]"}, "regions: the list is empty"),
        ({"tolerances": "[0.0]"}, "tolerances[0]: a tolerance must be a positive number"),
        ({"cases": "[14]"}, "cases[0]: expected a string"),
        ({"budget": "3"}, "unknown key 'budget'"),
        ({"device": '"gpu"'}, "device 'gpu'"),
        ({"surrogates": '["missing.pt"]'}, "surrogates[0] 'missing.pt': no surrogate file at"),
        ({"regions": '["+-5%"'}, "not valid TOML"),
    ],
)
def test_malformed_files_name_what_is_wrong(tmp_path, surrogate, overrides, expected):
    problems = _problems(_study(tmp_path, surrogate, **overrides))
    assert any(expected in p for p in problems), problems

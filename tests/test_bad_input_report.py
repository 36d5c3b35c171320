"""`gridverify report` on bad certificates: a file that is not one, or one that contradicts its own verdict
rule (a NaN bound, "verified" above the tolerance, "violated" without a witness, ...), ends with exit code 2
and one line naming the file and the problem, with no traceback and no report written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gridverify.cli import main
from gridverify.specs.certificate import Certificate, ConstraintRecord


def _record(verdict: str, **kw: object) -> ConstraintRecord:
    base: dict = dict(
        name=f"vm_max[bus {len(verdict)}]", family="vm_max", kind="inequality", element=("bus", 4), unit="pu",
        tolerance=1e-4, verdict=verdict, bound=0.25, worst=0.125, witness=(0.1, 0.2), seconds=1.5, domains=3,
    )  # fmt: skip
    base.update(kw)
    return ConstraintRecord(**base)


def _valid() -> dict:
    records = (
        _record("violated"),
        _record("verified", bound=5e-5, worst=-1.0, witness=None),
        _record("unknown", bound=math.inf),
    )
    cert = Certificate(
        case="nocase", surrogate="ab" * 32, region={"lower": [0.0], "upper": [0.2], "label": "+-10%"},
        settings={"tolerance": 1e-4}, records=records, seconds=3.0, created="2026-12-01T00:00:00+00:00",
        gridverify="0", input_names=("pd_pu[bus 2]", "qd_pu[bus 2]"),
    )  # fmt: skip
    return cert.to_dict()


def _edit(record: int, **fields: object) -> str:
    """The valid certificate with one record's fields changed; a witness given as a vector goes into
    ``loads`` and the record gets its index, as `Certificate.save` writes it."""
    d = _valid()
    if isinstance(fields.get("witness"), list):
        d["loads"].append(fields["witness"])
        fields["witness"] = len(d["loads"]) - 1
    d["records"][record].update(fields)
    return json.dumps(d)


BROKEN = {
    "nan_bound": (_edit(0, bound=math.nan), "NaN in bound"),
    "nan_worst": (_edit(2, worst=math.nan), "NaN in worst"),
    "nan_witness": (_edit(0, witness=[0.1, math.nan]), "NaN in witness"),
    "verified_above_tolerance": (_edit(1, bound=0.5), "verified, but its bound 0.5 exceeds its tolerance"),
    "violated_below_tolerance": (_edit(0, worst=1e-6), "violated, but its worst 1e-06 does not exceed"),
    "violated_without_witness": (_edit(0, witness=None), "violated, but it has no witness"),
    "worst_above_bound": (_edit(2, bound=0.1, worst=0.2), "worst found 0.2 exceeds the certified bound 0.1"),
    "short_witness": (_edit(0, witness=[0.1]), "witness does not have 2 entries"),
    "negative_seconds": (_edit(0, seconds=-1), "negative tolerance, seconds or domains"),
    "text_bound": (_edit(0, bound="big"), "wrong type"),
    "unknown_verdict": (_edit(0, verdict="maybe"), "verdict 'maybe'"),
    "wrong_counts": (
        json.dumps({**_valid(), "counts": {"verified": 3, "violated": 0, "unknown": 0}}),
        "counts",
    ),
    "records_not_a_list": (json.dumps({**_valid(), "records": 3}), "records must be a list"),
    "incomplete": (json.dumps({**_valid(), "complete": False}), "incomplete"),
    "a_list": ("[1, 2]", "not a certificate"),
    "not_json": ("{", "not JSON"),
    "empty": ("", "not JSON"),
    "binary": (b"\xff\xfe\x00", "not JSON"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_certificate_is_refused(name, tmp_path, capsys):
    body, problem = BROKEN[name]
    path = tmp_path / "certificate.json"
    if isinstance(body, bytes):
        path.write_bytes(body)
    else:
        path.write_text(body)
    assert main(["report", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gridverify report: ") and "\n" not in err and "Traceback" not in err, err
    assert str(path) in err and problem in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["certificate.json"]  # no report, no --out folder


def test_the_valid_certificate_of_these_tests_reads_back(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_valid()))
    assert Certificate.load(path).counts() == {"verified": 1, "violated": 1, "unknown": 1}


def test_a_missing_certificate_and_a_folder_are_refused(tmp_path, capsys):
    for path, problem in ((tmp_path / "absent.json", "no such file"), (tmp_path, "cannot be read")):
        assert main(["report", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert str(path) in err and problem in err and "\n" not in err, err


def test_out_onto_a_file_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "certificate.json"
    path.write_text(json.dumps(_valid()))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(path), "--out", str(blocker)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(blocker) in err and "\n" not in err, err
    assert not (tmp_path / "report.md").exists()

"""The certificate's JSON schema: round trip, refusal of incomplete or foreign files, atomic writes."""

from __future__ import annotations

import json
import math

import pytest

from gridverify.specs.certificate import SCHEMA, Certificate, CertificateError, ConstraintRecord


def _record(name: str = "thermal_from[line 3: 4-7]", verdict: str = "violated", **kw) -> ConstraintRecord:
    base = dict(
        name=name,
        family="thermal_from",
        kind="inequality",
        element=("line", 3),
        unit="pu^2",
        tolerance=1e-4,
        verdict=verdict,
        bound=0.25,
        worst=0.125,
        witness=(0.1, 0.2, 0.05, 0.01),
        seconds=1.5,
        domains=12,
        history=((0.0, math.inf), (0.5, 0.25)),
        replay={"converged": True, "pandapower": 0.11, "confirmed": True, "results": {"res_line.i_ka": 0.3}},
    )
    base.update(kw)
    return ConstraintRecord(**base)


def _certificate(*records: ConstraintRecord, complete: bool = True) -> Certificate:
    return Certificate(
        case="case14",
        surrogate="ab" * 32,
        region={"lower": [0.0, 0.1], "upper": [0.2, 0.3], "label": "+-10%"},
        settings={"tolerance": 1e-4, "timeout_s": 10.0},
        records=records,
        seconds=3.0,
        created="2026-11-26T22:00:00+00:00",
        gridverify="0.1.0",
        complete=complete,
        input_names=("pd_pu[bus 2]", "pd_pu[bus 3]", "qd_pu[bus 2]", "qd_pu[bus 3]"),
    )


def test_round_trip_keeps_every_field(tmp_path):
    cert = _certificate(
        _record(),
        _record(
            "p_balance[bus 2]",
            "verified",
            family="p_balance",
            kind="equality",
            element=("bus", 2),
            witness=None,
            replay=None,
            bound=5e-5,
            worst=-1.0,
        ),
        _record("vm_max[bus 4]", "unknown", family="vm_max", element=("bus", 4), bound=math.inf, replay=None),
    )
    path = cert.save(tmp_path / "sub" / "certificate.json")
    raw = json.loads(path.read_text())
    assert raw["schema"] == SCHEMA and raw["counts"] == {"verified": 1, "violated": 1, "unknown": 1}
    assert raw["records"][2]["bound"] == "inf"  # JSON has no infinity
    back = Certificate.load(path)
    assert back == cert
    assert back.records[0].history[0] == (0.0, math.inf)
    assert back.summary()["thermal_from"] == {
        "verified": 0, "violated": 1, "unknown": 0, "worst_bound": 0.25, "worst_found": 0.125
    }  # fmt: skip
    assert [r.name for r in back.worst_violations()] == ["thermal_from[line 3: 4-7]"]
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_incomplete_foreign_and_broken_files_are_refused(tmp_path):
    cert = _certificate(_record())
    d = cert.to_dict()
    cases = {
        "incomplete.json": json.dumps({**d, "complete": False}),
        "foreign.json": json.dumps({**d, "schema": "other/2"}),
        "truncated.json": json.dumps(d)[:-40],
        "verdict.json": json.dumps({**d, "records": [{**d["records"][0], "verdict": "maybe"}]}),
        "missing.json": json.dumps(
            {**d, "records": [{k: v for k, v in d["records"][0].items() if k != "bound"}]}
        ),
    }
    messages = {"incomplete.json": "incomplete", "foreign.json": "schema", "truncated.json": "not JSON",
                "verdict.json": "maybe", "missing.json": "bound"}  # fmt: skip
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(CertificateError, match=messages[name]) as err:
            Certificate.load(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(CertificateError, match="no such file"):
        Certificate.load(tmp_path / "absent.json")


def test_nan_is_refused_on_write(tmp_path):
    cert = _certificate(_record(bound=math.nan))
    with pytest.raises(ValueError):
        cert.save(tmp_path / "c.json")
    assert list(tmp_path.iterdir()) == []


def test_each_distinct_witness_is_written_once_and_read_back_into_every_record(tmp_path):
    shared, other = (0.1, 0.2, 0.05, 0.01), (0.3, 0.1, 0.0, -0.02)
    cert = _certificate(
        _record("a", witness=shared),
        _record("b", "unknown", witness=other, replay=None),
        _record("c", "verified", witness=shared, bound=5e-5, worst=-1.0, replay=None),
        _record("d", "verified", witness=None, bound=5e-5, worst=-1.0, replay=None),
    )
    path = cert.save(tmp_path / "certificate.json")
    raw = json.loads(path.read_text())
    assert raw["loads"] == [list(shared), list(other)]
    assert [r["witness"] for r in raw["records"]] == [0, 1, 0, None]
    lines = path.read_text().splitlines()
    assert [json.loads(x.strip().rstrip(",")) for x in lines if x.lstrip().startswith("[0.")] == raw["loads"]
    assert sum(x.lstrip().startswith('{"name": ') for x in lines) == 4  # one line a record and a load
    assert Certificate.load(path) == cert


def test_schema_1_with_inline_witnesses_is_still_read(tmp_path):
    cert = _certificate(_record(), _record("b", "unknown", witness=(0.0, 0.0, 0.1, 0.1), replay=None))
    raw = cert.to_dict()
    raw["schema"] = "gridverify.certificate/1"
    raw["records"] = [r.to_dict() for r in cert.records]
    del raw["loads"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    assert Certificate.load(path) == cert


@pytest.mark.parametrize("index", [2, -1, 0.5, True, "0"])
def test_a_witness_index_outside_loads_is_refused(tmp_path, index):
    raw = _certificate(_record()).to_dict()
    raw["records"][0]["witness"] = index
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(CertificateError, match="witness"):
        Certificate.load(path)

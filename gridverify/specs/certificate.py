"""The certificate: what `gridverify verify` proved, found and replayed, as versioned JSON.

Schema (``schema`` = `SCHEMA`, documented field by field in ``docs/certificate.md``):

- ``case``, ``surrogate`` (sha256 fingerprint of weights and layout), ``region`` (`Region.to_dict`),
  ``settings`` (tolerance, timeouts, device, dtype), ``gridverify`` (package version), ``created`` (UTC),
  ``seconds`` (wall time), ``complete`` (False while a run is still writing; a reader refuses it);
- ``records``: one per constraint, with its ``name`` (``thermal_from[line 3: 4-7]``), ``family``, ``kind``
  (``inequality``: violation ``g(x)``; ``equality``: violation ``|h(x)|``), ``element`` (``[kind, id]`` as in
  the case), ``unit``, ``tolerance``, ``verdict`` (``verified``: the certified bound is at most the tolerance;
  ``violated``: a load in the region, re-evaluated in float64, exceeds it; ``unknown``), ``bound`` (certified
  upper bound of the violation over the region), ``worst`` (largest violation found), ``witness`` (the load
  vector ``[pd_pu..., qd_pu...]`` where ``worst`` was found, float64), ``seconds``, ``domains`` (branch and
  bound domains explored), ``history`` (``[seconds, bound]`` pairs) and ``replay`` (pandapower's own numbers
  at the witness, for violated constraints; see `gridverify.verify.replay`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from gridverify.bab.verdict import proves, refutes

SCHEMA = "gridverify.certificate/2"
READABLE = ("gridverify.certificate/1", SCHEMA)
"""Schemas a reader takes: /1 wrote each record's witness inline; /2 writes every distinct witness once in
``loads`` and each record's ``witness`` as its index there (case1354: 14421 records, 1741 distinct loads of
2708 entries; inline, 341 MB and 88 s to write)."""
VERDICTS = ("verified", "violated", "unknown")


class CertificateError(ValueError):
    """A certificate file that cannot be read back: not JSON, another schema, incomplete, missing fields."""


@dataclass(frozen=True)
class ConstraintRecord:
    """The answer for one constraint (see the module docstring for every field)."""

    name: str
    family: str
    kind: str
    element: tuple[str, int]
    unit: str
    tolerance: float
    verdict: str
    bound: float
    worst: float
    witness: tuple[float, ...] | None
    seconds: float
    domains: int
    history: tuple[tuple[float, float], ...] = ()
    replay: Mapping[str, Any] | None = None

    def to_dict(self, witness: int | None = None) -> dict[str, Any]:
        """The record as JSON values; with ``witness`` (an index of the certificate's ``loads``) that index
        in place of the load vector."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["element"] = list(self.element)
        d["witness"] = None if self.witness is None else list(self.witness) if witness is None else witness
        d["history"] = [list(h) for h in self.history]
        d["replay"] = None if self.replay is None else dict(self.replay)
        return {k: _json_number(v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConstraintRecord:
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING]
        if missing:
            raise CertificateError(f"record {d.get('name', '?')!r} lacks {', '.join(missing)}")
        if d["verdict"] not in VERDICTS:
            raise CertificateError(f"record {d['name']!r}: verdict {d['verdict']!r} is not one of {VERDICTS}")
        try:
            kind, idx = d["element"]
            witness = d.get("witness")
            record = cls(
                name=str(d["name"]),
                family=str(d["family"]),
                kind=str(d["kind"]),
                element=(str(kind), int(idx)),
                unit=str(d["unit"]),
                tolerance=float(d["tolerance"]),
                verdict=d["verdict"],
                bound=_number(d["bound"]),
                worst=_number(d["worst"]),
                witness=None if witness is None else tuple(float(v) for v in witness),
                seconds=float(d["seconds"]),
                domains=int(d["domains"]),
                history=tuple((float(s), _number(u)) for s, u in d.get("history", ())),
                replay=d.get("replay"),
            )
        except (TypeError, ValueError) as err:
            raise CertificateError(
                f"record {d.get('name', '?')!r}: a field has the wrong type ({err})"
            ) from None
        problem = record.problem()
        if problem is not None:
            raise CertificateError(f"record {record.name!r}: {problem}")
        return record

    def problem(self) -> str | None:
        """Why this record contradicts its own verdict rule (None: it does not). Every number is finite
        except ``bound`` (may be +inf) and ``worst`` (may be -inf); ``worst <= bound`` (the largest violation
        found cannot exceed the certified bound); *verified* needs ``bound <= tolerance``; *violated* needs
        ``worst > tolerance`` and a witness."""
        numbers = {"tolerance": self.tolerance, "seconds": self.seconds, "bound": self.bound,
                   "worst": self.worst}  # fmt: skip
        nan = [k for k, v in numbers.items() if math.isnan(v)]
        if nan or any(math.isnan(v) for v in self.witness or ()):
            return f"NaN in {', '.join(nan) or 'witness'}"
        infinite = [k for k in ("tolerance", "seconds") if math.isinf(numbers[k])]
        infinite += ["bound"] * (self.bound == -math.inf) + ["worst"] * (self.worst == math.inf)
        if infinite or any(math.isinf(v) for v in self.witness or ()):
            return f"infinite {', '.join(infinite) or 'witness'}"
        if self.tolerance < 0 or self.seconds < 0 or self.domains < 0:
            return "negative tolerance, seconds or domains"
        if self.worst > self.bound + 1e-9 * max(1.0, abs(self.bound)):
            return f"worst found {self.worst:g} exceeds the certified bound {self.bound:g}"
        if self.verdict == "verified" and not proves(self.bound, self.tolerance):
            return f"verified, but its bound {self.bound:g} exceeds its tolerance {self.tolerance:g}"
        if self.verdict == "violated" and not refutes(self.worst, self.tolerance):
            return f"violated, but its worst {self.worst:g} does not exceed its tolerance {self.tolerance:g}"
        if self.verdict == "violated" and not self.witness:
            return "violated, but it has no witness load"
        return None


@dataclass(frozen=True)
class Certificate:
    """Everything one verification run established, loadable back with `Certificate.load`."""

    case: str
    surrogate: str
    region: Mapping[str, Any]
    settings: Mapping[str, Any]
    records: tuple[ConstraintRecord, ...]
    seconds: float
    created: str
    gridverify: str
    complete: bool = True
    input_names: tuple[str, ...] = field(default=())

    # -- reading -------------------------------------------------------------------------------------
    def family(self, name: str) -> tuple[ConstraintRecord, ...]:
        return tuple(r for r in self.records if r.family == name)

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.family for r in self.records))

    def summary(self) -> dict[str, dict[str, float]]:
        """family -> counts of each verdict and the worst certified bound (largest ``bound``)."""
        out: dict[str, dict[str, float]] = {}
        for fam in self.families:
            recs = self.family(fam)
            row: dict[str, float] = {v: sum(r.verdict == v for r in recs) for v in VERDICTS}
            row["worst_bound"] = max(r.bound for r in recs)
            row["worst_found"] = max(r.worst for r in recs)
            out[fam] = row
        return out

    def counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.records) for v in VERDICTS}

    def worst_violations(self, k: int = 10) -> tuple[ConstraintRecord, ...]:
        """The ``k`` violated constraints with the largest violation found."""
        bad = [r for r in self.records if r.verdict == "violated"]
        return tuple(sorted(bad, key=lambda r: r.worst - r.tolerance, reverse=True)[:k])

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        index: dict[tuple[float, ...], int] = {}
        records = []
        for r in self.records:
            at = None if r.witness is None else index.setdefault(r.witness, len(index))
            records.append(r.to_dict(witness=at))
        loads = list(index)
        return {
            "schema": SCHEMA,
            "case": self.case,
            "surrogate": self.surrogate,
            "region": dict(self.region),
            "settings": dict(self.settings),
            "input_names": list(self.input_names),
            "seconds": self.seconds,
            "created": self.created,
            "gridverify": self.gridverify,
            "complete": self.complete,
            "counts": self.counts(),
            "loads": [_json_number(list(w)) for w in loads],
            "records": records,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Certificate:
        if d.get("schema") not in READABLE:
            raise CertificateError(f"schema {d.get('schema')!r} is not one of {READABLE}")
        if not d.get("complete", False):
            raise CertificateError("the certificate is incomplete (its run did not finish)")
        keys = ("case", "surrogate", "region", "settings", "records", "seconds", "created", "gridverify")
        missing = [k for k in keys if k not in d]
        if missing:
            raise CertificateError(f"missing fields: {', '.join(missing)}")
        if not isinstance(d["records"], list) or not all(isinstance(r, Mapping) for r in d["records"]):
            raise CertificateError("records must be a list of objects")
        try:
            cert = cls(
                case=str(d["case"]),
                surrogate=str(d["surrogate"]),
                region=dict(d["region"]),
                settings=dict(d["settings"]),
                records=tuple(ConstraintRecord.from_dict(r) for r in _inline_witnesses(d)),
                seconds=float(d["seconds"]),
                created=str(d["created"]),
                gridverify=str(d["gridverify"]),
                complete=True,
                input_names=tuple(str(n) for n in d.get("input_names", ())),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, CertificateError):
                raise
            raise CertificateError(f"a field has the wrong type ({err})") from None
        problem = cert.problem(d.get("counts"))
        if problem is not None:
            raise CertificateError(problem)
        return cert

    def problem(self, counts: Any = None) -> str | None:
        """Why the certificate as a whole does not hold together (None: it does): a non-finite or negative
        ``seconds``, a witness of the wrong length, ``counts`` (as written) that disagree with the records."""
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            return f"seconds must be finite and >= 0, got {self.seconds}"
        if self.input_names:
            wrong = [
                r.name
                for r in self.records
                if r.witness is not None and len(r.witness) != len(self.input_names)
            ]
            if wrong:
                return f"record {wrong[0]!r}: its witness does not have {len(self.input_names)} entries"
        if counts is not None and counts != self.counts():
            return f"counts {counts} disagree with the records ({self.counts()})"
        return None

    def save(self, path: str | Path) -> Path:
        """Write atomically (a temporary file in the same folder, then `os.replace`)."""
        return write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Certificate:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise CertificateError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CertificateError(f"{path}: not JSON ({err})") from None
        except OSError as err:
            raise CertificateError(f"{path}: cannot be read ({err.strerror or err})") from None
        if not isinstance(d, dict):
            raise CertificateError(f"{path}: not a certificate (a JSON {type(d).__name__}, not an object)")
        try:
            return cls.from_dict(d)
        except CertificateError as err:
            raise CertificateError(f"{path}: {err}") from None


def _inline_witnesses(d: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The records of a certificate dict with each witness as its load vector (schema /2 writes the index
    of a row of ``loads``; /1 the vector itself)."""
    if d["schema"] != SCHEMA:
        return list(d["records"])
    loads = d.get("loads")
    if not isinstance(loads, list):
        raise CertificateError("loads must be a list of load vectors")
    out = []
    for r in d["records"]:
        k = r.get("witness")
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(loads):
                name, last = r.get("name", "?"), len(loads) - 1
                raise CertificateError(f"record {name!r}: witness {k!r} is not an index of loads (0..{last})")
            r = {**r, "witness": loads[k]}
        out.append(r)
    return out


def write_json_atomic(path: Path, payload: Any) -> Path:
    """``payload`` as JSON at ``path``; readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            _dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _dump(payload: Any, f: Any) -> None:
    """``payload`` as indented JSON, except that a list of objects or lists (a certificate's records and
    loads) is written one compact item a line: readable and diffable by line, and written by json's C
    encoder (indented output takes its pure-Python one: case1354's 14421 records with 2708-entry witnesses
    took 88 s to write)."""
    if not isinstance(payload, dict):
        json.dump(payload, f, indent=1, allow_nan=False)
        return
    f.write("{")
    for n, (key, value) in enumerate(payload.items()):
        f.write(("\n" if n == 0 else ",\n") + f" {json.dumps(key)}: ")
        if isinstance(value, list) and value and all(isinstance(v, (dict, list)) for v in value):
            lines = (json.dumps(v, allow_nan=False) for v in value)
            f.write("[\n  " + ",\n  ".join(lines) + "\n ]")
        else:
            f.write(json.dumps(value, indent=1, allow_nan=False).replace("\n", "\n "))
    f.write("\n}\n")


def _json_number(v: Any) -> Any:
    """JSON has no infinities: +-inf become the strings "inf" / "-inf" (NaN is refused)."""
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, list):
        return [_json_number(x) for x in v]
    return v


def _number(v: float | str) -> float:
    return float(v)


def records_table(records: Sequence[ConstraintRecord]) -> list[dict[str, Any]]:
    """Flat rows (name, family, verdict, bound, worst, seconds) for printing or a DataFrame."""
    keys = ("name", "family", "verdict", "bound", "worst", "tolerance", "unit", "seconds", "domains")
    return [{k: getattr(r, k) for k in keys} for r in records]

"""Study files: a TOML description of a sweep, expanded into jobs with stable ids and checked as a whole.

A study file lists what to sweep; every combination becomes a job (one `gridverify.verify.verify` call)::

    name = "case14 regions"                 # optional, for the report
    cases = ["case14"]                       # shipped case names, or case folders ("./my_case14")
    surrogates = ["shipped"]                 # optional; "shipped" (the case's own, default) or .pt files
    families = ["thermal_from", "vm_min"]    # optional; default: every constraint family
    regions = ["+-1%", "+-5%", "0.9:1.1"]    # load regions (`Region.parse`): +-P%, P%, LO:HI
    tolerances = [1e-4]                      # optional; default [1e-4]
    timeout_s = 30.0                         # wall-time budget of one job
    split_families = true                    # optional; one job per family (default) or one for all

Paths (case folders, surrogate files) are relative to the study file. A job's id is a hash of everything
that decides its answer (the case's and surrogate's files, the region's load box, families, tolerance,
budget, device), so the same job has the same id in every run and every study file:
re-running finds its certificate and skips it. Every problem of a file (syntax, unknown keys, unknown case
or family, malformed region, two entries giving the same job) is collected and reported at once, each with
where it was met, before any job starts.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SHIPPED",
    "Job",
    "StudyError",
    "StudySpec",
    "case_fingerprint",
    "expand",
    "file_sha256",
    "job_id",
    "load_study",
    "parse_study",
    "surrogate_path",
]

SHIPPED = "shipped"  # the case's own surrogate
_KEYS = {
    "name": str,
    "cases": list,
    "surrogates": list,
    "families": list,
    "regions": list,
    "tolerances": list,
    "timeout_s": (int, float),
    "split_families": bool,
    "device": str,
}
_REQUIRED = ("cases", "regions", "timeout_s")


class StudyError(ValueError):
    """Everything wrong with a study file, one problem per line, each saying where it was met."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:  # one problem: one line
            super().__init__(f"{source}: {self.problems[0]}")
        else:
            super().__init__(f"{source}: {len(self.problems)} problems\n" + "\n".join(self.problems))


@dataclass(frozen=True)
class StudySpec:
    """A study file's contents, checked for shape and types (not yet against the shipped cases)."""

    name: str
    cases: tuple[str, ...]
    surrogates: tuple[str, ...]
    families: tuple[str, ...]
    regions: tuple[str, ...]
    tolerances: tuple[float, ...]
    timeout_s: float
    split_families: bool = True
    device: str = "cpu"


@dataclass(frozen=True)
class Job:
    """One verification run: a case under a surrogate, some constraint families, over a load region.

    ``region`` is the text as written in the study file (re-parsed where the job runs); ``region_pct`` the
    region's half-width as a percentage of nominal load (largest over loads), for plots against region size.
    """

    id: str
    case: str
    surrogate: str
    region: str
    region_pct: float
    families: tuple[str, ...]
    tolerance: float
    timeout_s: float
    device: str
    fingerprints: tuple[str, str] = ("", "")  # sha256 of the case's files and of the surrogate file

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["families"] = list(self.families)
        d["fingerprints"] = list(self.fingerprints)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        return cls(**{**d, "families": tuple(d["families"]), "fingerprints": tuple(d["fingerprints"])})

    def describe(self) -> str:
        fams = self.families[0] if len(self.families) == 1 else f"{len(self.families)} families"
        return f"{self.case}/{self.surrogate} {fams} over {self.region} (tol {self.tolerance:g})"


def load_study(path: str | Path) -> list[Job]:
    """The jobs of the study file at ``path``, checked against the shipped cases (raises `StudyError`)."""
    return expand(parse_study(Path(path).read_text(), str(path)), str(path))


def parse_study(text: str, source: str = "<study>") -> StudySpec:
    """A `StudySpec` from TOML text; shape and type problems raise one `StudyError` listing all of them."""
    from gridverify.surrogate.case import read_toml

    try:
        raw = read_toml(text)
    except ValueError as err:
        raise StudyError(source, [str(err)]) from None
    problems = _shape_problems(raw)
    if problems:
        raise StudyError(source, problems)
    return _spec(raw)


def _shape_problems(raw: Mapping[str, Any]) -> list[str]:
    problems = [f"unknown key {k!r} (allowed: {', '.join(_KEYS)})" for k in raw if k not in _KEYS]
    problems += [f"missing key {k!r}" for k in _REQUIRED if k not in raw]
    for key, kind in _KEYS.items():
        if key in raw and not _type_ok(raw[key], kind):
            problems.append(f"{key}: expected {_kind_name(kind)}, got {raw[key]!r}")
        elif key in raw and kind is list:
            problems += _list_problems(key, raw[key])
    timeout = raw.get("timeout_s")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and not 0 < timeout < math.inf:
        problems.append(f"timeout_s: must be a positive number of seconds, got {timeout}")
    return problems


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return {list: "a list", str: "a string", bool: "true or false"}.get(kind, "a number")  # type: ignore[arg-type]


def _list_problems(key: str, values: list[Any]) -> list[str]:
    want = float if key == "tolerances" else str
    if not values:
        return [f"{key}: the list is empty"]
    problems = []
    for i, v in enumerate(values):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) if want is float else isinstance(v, str)
        if not ok:
            problems.append(f"{key}[{i}]: expected {'a number' if want is float else 'a string'}, got {v!r}")
        elif want is float and not 0 < v < math.inf:
            problems.append(f"{key}[{i}]: a tolerance must be a positive number, got {v}")
    return problems


def _spec(raw: Mapping[str, Any]) -> StudySpec:
    from gridverify.grid.families import NAMES

    return StudySpec(
        name=raw.get("name", ""),
        cases=tuple(raw["cases"]),
        surrogates=tuple(raw.get("surrogates", [SHIPPED])),
        families=tuple(raw.get("families", NAMES)),
        regions=tuple(raw["regions"]),
        tolerances=tuple(float(t) for t in raw.get("tolerances", [1e-4])),
        timeout_s=float(raw["timeout_s"]),
        split_families=raw.get("split_families", True),
        device=raw.get("device", "cpu"),
    )


# -- expansion and checks against the shipped cases ------------------------------------------------------


@dataclass(frozen=True)
class _Resolved:
    """A (case, surrogate, region) combination, checked: what the job's id is computed from."""

    case: str
    surrogate: str
    region: str
    where: str  # "cases[0] 'case14', regions[2] '+-5%'"
    box: tuple[list[float], list[float]]
    region_pct: float
    fingerprints: tuple[str, str]  # (case files, surrogate file) sha256
    present: tuple[str, ...]  # constraint families the case has


def expand(spec: StudySpec, source: str = "<study>") -> list[Job]:
    """Every combination of the study as a `Job`, after checking cases, surrogates, families and regions
    against what is shipped; all problems raise one `StudyError`. A family the case has no constraint of
    (e.g. no angle limits) gives no job for that case."""
    problems = _family_problems(spec.families) + _device_problems(spec.device)
    resolved = _resolve(spec, Path(source).parent, problems)
    jobs, origins = [], []
    for r in resolved:
        for group in _family_groups(spec, r.present):
            for tol in spec.tolerances:
                jobs.append(_job(spec, r, group, tol))
                origins.append(f"{r.where}, families {list(group)}, tolerance {tol:g}")
    problems += _duplicate_problems(jobs, origins)
    if problems:
        raise StudyError(source, problems)
    return jobs


def _family_problems(families: Sequence[str]) -> list[str]:
    from gridverify.grid.families import NAMES as known

    out = [f"families[{i}] {f!r}: unknown family (known: {', '.join(known)})" for i, f in enumerate(families)]
    out = [p for p, f in zip(out, families) if f not in known]
    seen: dict[str, int] = {}
    for i, f in enumerate(families):
        if f in seen:
            out.append(f"families[{i}] {f!r}: listed twice (also families[{seen[f]}])")
        seen.setdefault(f, i)
    return out


def _device_problems(device: str) -> list[str]:
    import torch

    try:  # compute and read back: ``meta`` holds no numbers, an absent accelerator fails here
        probe = torch.ones(2, dtype=torch.float64, device=device)
        float((probe * 2).sum().cpu().item())
    except Exception as err:  # torch raises RuntimeError, NotImplementedError, AssertionError, ...
        message = " ".join(str(err).split()) or type(err).__name__
        return [f"device {device!r} is not available: {message[:200]}"]
    return []


def _family_groups(spec: StudySpec, present: Sequence[str]) -> list[tuple[str, ...]]:
    families = [f for f in spec.families if f in present]
    if not families:
        return []
    return [(f,) for f in families] if spec.split_families else [tuple(families)]


def _resolve(spec: StudySpec, base: Path, problems: list[str]) -> list[_Resolved]:
    """Load every case once, find and check every surrogate and parse every region against the case;
    unknown names, unreadable surrogates and bad regions go to ``problems``."""
    from gridverify.surrogate import load_case

    out: list[_Resolved] = []
    for i, entry in enumerate(spec.cases):
        where = f"cases[{i}] {entry!r}"
        case = _collect(problems, where, lambda entry=entry: load_case(_case_ref(entry, base)))
        if case is None:
            continue
        surrogates = _surrogates(spec, case, where, base, problems)
        regions = _regions(spec, case, where, problems)
        for s, sha in surrogates:
            out += [replace(r, surrogate=s, fingerprints=(case_fingerprint(case), sha)) for r in regions]
    return out


def _case_ref(entry: str, base: Path) -> str:
    """A shipped case's name as is; anything that looks like a path, resolved against the study's folder."""
    return str((base / entry).resolve()) if "/" in entry or entry.startswith(".") else entry


def _surrogates(
    spec: StudySpec, case: Any, where: str, base: Path, problems: list[str]
) -> list[tuple[str, str]]:
    """``(entry, sha256 of its file)`` for every surrogate that reads back against the case's layout."""
    out = []
    for k, entry in enumerate(spec.surrogates):
        path = surrogate_path(case, entry if entry == SHIPPED else str((base / entry).resolve()))
        at = f"{where}, surrogates[{k}] {entry!r}"
        if _collect(problems, at, lambda path=path: _read_surrogate(path, case.data)) is not None:
            out.append((SHIPPED if entry == SHIPPED else str(path), file_sha256(path)))
    return out


def _read_surrogate(path: Path, data: Any) -> Any:
    from gridverify.surrogate.case import read_surrogate

    if not path.is_file():
        raise ValueError(f"no surrogate file at {path}")
    return read_surrogate(path, data)


def _regions(spec: StudySpec, case: Any, where: str, problems: list[str]) -> list[_Resolved]:
    from gridverify.specs import Region

    out = []
    for j, text in enumerate(spec.regions):
        at = f"{where}, regions[{j}] {text!r}"
        region = _collect(problems, at, lambda text=text: Region.parse(text, case.data))
        if region is not None:
            box = (region.lower.tolist(), region.upper.tolist())
            pct = _region_pct(region.lower, region.upper, case.data)
            ref = case.folder.name if str(case.folder.parent) == _shipped_dir() else str(case.folder)
            out.append(_Resolved(ref, SHIPPED, text, at, box, pct, ("", ""), case.problem.families))
    return out


def _shipped_dir() -> str:
    from gridverify.surrogate.case import CASES_DIR

    return str(CASES_DIR.resolve())


def _collect(problems: list[str], where: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        problems.append(f"{where}: {err}")
        return None


def _region_pct(lower: np.ndarray, upper: np.ndarray, data: Any) -> float:
    """Largest half-width of the box as a percentage of the nominal load magnitude, over nonzero loads."""
    from gridverify.specs.region import nominal_load

    nominal = np.abs(nominal_load(data))
    nonzero = nominal > 0
    if not nonzero.any():
        return 0.0
    return float(np.max((upper - lower)[nonzero] / 2 / nominal[nonzero]) * 100)


# -- identity ----------------------------------------------------------------------------------------------


def surrogate_path(case: Any, entry: str) -> Path:
    """The file of a surrogate entry: the case's own ``surrogate.pt`` for ``"shipped"``, else the path."""
    return case.folder / "surrogate.pt" if entry == SHIPPED else Path(entry)


def case_fingerprint(case: Any) -> str:
    """sha256 over the case's definition and source files (limits, loads, topology)."""
    digest = hashlib.sha256()
    for path in (case.folder / "case.toml", case.source):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if Path(path).is_file() else ""


def _job(spec: StudySpec, r: _Resolved, families: tuple[str, ...], tolerance: float) -> Job:
    settings = (tolerance, spec.timeout_s, spec.device)
    job = Job("", r.case, r.surrogate, r.region, r.region_pct, families, *settings, r.fingerprints)
    return replace(job, id=job_id(job, r.box))


def job_id(job: Job, box: tuple[list[float], list[float]]) -> str:
    """The job's stable id: a hash of everything that decides its answer: case and surrogate (by the
    sha256 of their files, not their names), the region as its load ``box`` (lower, upper: two texts
    meaning the same box give the same id), families, tolerance, budget and device."""
    content = {
        "case": job.fingerprints[0],
        "surrogate": job.fingerprints[1],
        "box": [list(box[0]), list(box[1])],
        "families": list(job.families),
        "tolerance": job.tolerance,
        "timeout_s": job.timeout_s,
        "device": job.device,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _duplicate_problems(jobs: Sequence[Job], origins: Sequence[str]) -> list[str]:
    first: dict[str, int] = {}
    out = []
    for k, job in enumerate(jobs):
        if job.id in first:
            out.append(f"duplicate job id {job.id}: {origins[k]} is the same job as {origins[first[job.id]]}")
        first.setdefault(job.id, k)
    return out

"""Cases: a grid, its constraints, a surrogate and a default load region, ready to verify (`Case`, the
protocol that `gridverify.verify`, the replay and the report read). Two kinds: case folders (`CaseFolder`,
the shipped ones among them: ``cases/<name>/``) and a bare grid file with a surrogate file (`FileCase`);
`open_case` opens either from the command line's words.

The shipped folders are package data: ``gridverify/cases`` is a link to the repository's ``cases/`` (so a
checkout and an editable install read them there), and a wheel or a non-editable install copies them into
the installed package (``[tool.setuptools.package-data]``); `CASES_DIR` is where they are found.

A case folder holds:

- ``case.toml``: the definition (`CaseDefinition`): source file, load region, architecture, data and
  training settings, seed (the format is described in ``cases/README.md``);
- the source grid: a MATPOWER / PGLib-OPF ``.m`` file (a PGLib case keeps its CC BY 4.0 header) or a
  pandapower ``.json`` net (`gridverify.grid.net.read_grid`);
- ``surrogate.pt``: ``{"config": AcopfSurrogate.config(), "state_dict": float64 weights}``;
- ``metrics.json``: what training measured (`gridverify.surrogate.train`);
- ``README.md``: the regenerating command and the metrics.

``load_case("case14")`` reads a shipped case by name, ``load_case(path)`` any folder of that form.

A grid file (a MATPOWER / PGLib ``.m`` case or a pandapower net saved as ``.json``) with a surrogate file
(``surrogate.pt`` as `gridverify train` writes it) is a `FileCase`; its default region is ``+-10%`` (no
training region is known for a bare file).
"""

from __future__ import annotations

import importlib.resources
import json
import sys
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch

from gridverify.grid.acopf import AcopfProblem, build_acopf
from gridverify.grid.data import GridData, GridError
from gridverify.grid.net import GRID_SUFFIXES, grid_net, read_grid
from gridverify.ir.graph import Graph
from gridverify.specs.region import Region
from gridverify.surrogate.compose import compose
from gridverify.surrogate.model import AcopfSurrogate, Layout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "CASES_DIR",
    "Case",
    "CaseDefinition",
    "CaseFolder",
    "FileCase",
    "SurrogateError",
    "available_cases",
    "load_case",
    "open_case",
    "read_surrogate",
    "read_toml",
    "write_case_folder",
]

# The shipped case folders: package data of gridverify (in a checkout, the link gridverify/cases -> cases/).
CASES_DIR = (Path(str(importlib.resources.files("gridverify"))) / "cases").resolve()
DEFINITION = "case.toml"


@dataclass(frozen=True)
class CaseDefinition:
    """The settings of ``case.toml``: sections ``[architecture]``, ``[data]``, ``[training]`` are kept as
    dicts for `gridverify.surrogate.train` to read into its config dataclasses."""

    name: str
    source: str
    region: str
    seed: int
    architecture: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> CaseDefinition:
        try:
            raw = read_toml(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: {err}") from None
        missing = [k for k in ("name", "source", "region") if k not in raw]
        if missing:
            raise ValueError(f"{path}: missing keys {missing}")
        unknown = sorted(set(raw) - {"name", "source", "region", "seed", "architecture", "data", "training"})
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}")
        try:
            return cls(
                str(raw["name"]), str(raw["source"]), str(raw["region"]), int(raw.get("seed", 0)),
                dict(raw.get("architecture", {})), dict(raw.get("data", {})), dict(raw.get("training", {})),
            )  # fmt: skip
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: a key has the wrong type ({err})") from None

    def to_toml(self, comment: str = "") -> str:
        """The ``case.toml`` text of this definition (`read` gives it back), after ``comment`` lines."""
        lines = [f"# {line}".rstrip() for line in comment.splitlines()]
        top = {"name": self.name, "source": self.source, "region": self.region, "seed": self.seed}
        lines += [f"{k} = {_toml_value(v)}" for k, v in top.items()]
        for section in ("architecture", "data", "training"):
            lines += ["", f"[{section}]"] + [
                f"{k} = {_toml_value(v)}" for k, v in getattr(self, section).items()
            ]
        return "\n".join(lines) + "\n"


def read_toml(text: str) -> dict[str, Any]:
    """The TOML ``text`` (a case definition, a study file) as a dict; `ValueError` ("not valid TOML: ...")
    when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"not valid TOML: {err}") from None


def _toml_value(value: Any) -> str:
    """A TOML value of a str, bool, int, float or a list of them."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string is a JSON string for these characters


def write_case_folder(grid: Path, out: Path, definition: CaseDefinition, comment: str = "") -> Path:
    """A new case folder ``out`` holding a copy of ``grid`` and ``case.toml`` (``definition``), checked by
    reading it (`read_grid`, the region) before anything is written. An existing ``out`` is accepted only
    when it is empty or already holds this same ``case.toml`` and grid file (a rerun: training resumes
    from the label cache); anything else is a ValueError that names the difference."""
    data = read_grid(grid)
    Region.parse(definition.region, data)
    text, copy = definition.to_toml(comment), out / definition.source
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        toml = out / DEFINITION
        if not toml.is_file():
            raise ValueError(
                f"{out}: not empty and not a case folder (no {DEFINITION}); choose another --out"
            )
        if toml.read_text() != text:
            raise ValueError(f"{toml} holds other settings; train that folder (gridverify train {out}) "
                             "or choose another --out")  # fmt: skip
        if not copy.is_file() or copy.read_bytes() != grid.read_bytes():
            raise ValueError(f"{out}: its {definition.source} differs from {grid}; choose another --out")
        return out
    out.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(grid.read_bytes())
    (out / DEFINITION).write_text(text)
    return out


class Case(Protocol):
    """What the verification, the replay and the report read of a case: its ``name``, ``folder`` (where it
    lives), grid ``data``, a fresh pandapower ``net``, the constraints (``problem``), the default
    ``region``, the ``surrogate``, their composition (``graph``: input ``"load"`` -> every constraint and
    quantity) and what training measured (``metrics``, empty when unknown). `CaseFolder` and `FileCase`
    are the two kinds."""

    @property
    def name(self) -> str: ...
    @property
    def folder(self) -> Path: ...
    @property
    def data(self) -> GridData: ...
    @property
    def net(self) -> Any: ...
    @property
    def problem(self) -> AcopfProblem: ...
    @property
    def region(self) -> Region: ...
    @property
    def surrogate(self) -> AcopfSurrogate: ...
    @property
    def graph(self) -> Graph: ...
    @property
    def metrics(self) -> dict[str, Any]: ...


class _FromGridFile:
    """What both kinds of case derive the same way from their grid file (``source``) and ``surrogate``, each
    made once, on first use: the grid ``data`` (`read_grid`: a file that cannot be read or is outside the
    model raises `GridError` naming it), the constraints (``problem``) and their composition with the
    surrogate (``graph``: input ``"load"`` (2D,) -> every constraint and quantity); ``net`` is a fresh
    pandapower net of the grid file at every access."""

    @property
    def source(self) -> Path:
        raise NotImplementedError

    @property
    def surrogate(self) -> AcopfSurrogate:
        raise NotImplementedError

    @cached_property
    def data(self) -> GridData:
        return read_grid(self.source)

    @property
    def net(self) -> Any:
        return grid_net(self.source)

    @cached_property
    def problem(self) -> AcopfProblem:
        return build_acopf(self.data)

    @cached_property
    def graph(self) -> Graph:
        return compose(self.problem, self.surrogate)


@dataclass(frozen=True, eq=False)
class CaseFolder(_FromGridFile):
    """A case folder (a `Case`): its grid file is ``definition.source``; ``region``, ``surrogate`` and
    ``metrics`` are made once, on first use."""

    folder: Path
    definition: CaseDefinition

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def source(self) -> Path:
        return self.folder / self.definition.source

    @cached_property
    def region(self) -> Region:
        """The default region: the one the surrogate was trained on (a ValueError naming ``case.toml`` when
        its text does not parse)."""
        try:
            return Region.parse(self.definition.region, self.data)
        except GridError:
            raise
        except ValueError as err:
            raise ValueError(f"{self.folder / DEFINITION}: {err}") from None

    @cached_property
    def surrogate(self) -> AcopfSurrogate:
        path = self.folder / "surrogate.pt"
        if not path.exists():
            raise FileNotFoundError(f"case {self.name}: no trained surrogate at {path} (train it first)")
        return read_surrogate(path, self.data)

    @cached_property
    def metrics(self) -> dict[str, Any]:
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {}


class SurrogateError(ValueError):
    """A surrogate file that cannot be used; the message names the file and what is wrong with it."""


def read_surrogate(path: Path, data: GridData | None = None) -> AcopfSurrogate:
    """A saved surrogate (float64, eval mode), its layout checked against ``data`` when given. A file that
    is not one (text, truncated, a pickle torch refuses, missing keys, wrong shapes, non-finite weights, a
    zero-width normalisation) raises `SurrogateError` naming the file."""
    saved = _load_weights(path)
    try:
        config = saved["config"]
        layout = Layout.from_dict(config["layout"])
        if data is not None:
            layout.check(data)
        model = AcopfSurrogate.from_state_dict(saved["state_dict"], layout, config["activation"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        raise SurrogateError(f"{path}: not a usable surrogate: {_first_line(err)}") from None
    problem = model.problem()
    if problem is not None:
        raise SurrogateError(f"{path}: {problem}")
    return model


def _load_weights(path: Path) -> Any:
    """``torch.load`` of ``path`` (weights only), every failure as a `SurrogateError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's note on the pickle protocol of a foreign file
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SurrogateError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SurrogateError(f"{path}: is a directory, not a surrogate file") from None
    except Exception as err:  # torch raises many kinds (EOFError, UnpicklingError, RuntimeError, ...)
        if path.is_file() and path.stat().st_size == 0:
            raise SurrogateError(f"{path}: empty file, not a surrogate") from None
        detail = f"{type(err).__name__}: {_first_line(err)}"
        raise SurrogateError(f"{path}: not a torch weights file, or a truncated one ({detail})") from None
    if not isinstance(saved, dict):
        raise SurrogateError(f"{path}: not a surrogate file (holds a {type(saved).__name__}, not a dict)")
    return saved


def _first_line(err: BaseException) -> str:
    """The first sentence of an error's message (torch's run on for lines)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(". ")[0].rstrip(".")[:200]


def available_cases() -> tuple[str, ...]:
    """Names of the shipped case folders in `CASES_DIR` (those with a ``case.toml``)."""
    if not CASES_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in CASES_DIR.iterdir() if (p / DEFINITION).is_file()))


def load_case(name_or_path: str | Path) -> CaseFolder:
    """A shipped case by name (``"case14"``) or any case folder by path."""
    folder = Path(name_or_path)
    if not (folder / DEFINITION).is_file():
        folder = CASES_DIR / str(name_or_path)
    if not (folder / DEFINITION).is_file():
        raise ValueError(
            f"no case {str(name_or_path)!r}: not a folder with {DEFINITION}, nor a shipped case; "
            f"shipped cases: {', '.join(available_cases()) or '(none found in ' + str(CASES_DIR) + ')'}"
        )
    return CaseFolder(folder.resolve(), CaseDefinition.read(folder / DEFINITION))


@dataclass(frozen=True, eq=False)
class FileCase(_FromGridFile):
    """A grid file with a surrogate file (a `Case`). ``grid``: a ``.m`` case or a pandapower ``.json`` net;
    ``surrogate_file``: the surrogate's weights; ``region_text``: the default region (no training region is
    known for a bare file)."""

    grid: Path
    surrogate_file: Path
    region_text: str = "+-10%"

    def __post_init__(self) -> None:
        if self.grid.suffix not in GRID_SUFFIXES:
            raise ValueError(f"{self.grid}: a grid file must end in {' or '.join(GRID_SUFFIXES)}")
        for what, path in (("grid file", self.grid), ("surrogate", self.surrogate_file)):
            if not path.is_file():
                raise ValueError(f"{what} {path} does not exist")

    @property
    def name(self) -> str:
        return self.grid.stem

    @property
    def folder(self) -> Path:
        return self.grid.parent

    @property
    def source(self) -> Path:
        return self.grid

    @cached_property
    def region(self) -> Region:
        return Region.parse(self.region_text, self.data)

    @cached_property
    def surrogate(self) -> AcopfSurrogate:
        return read_surrogate(self.surrogate_file, self.data)

    @property
    def metrics(self) -> dict[str, Any]:
        return {}


def open_case(name: str | Path, surrogate: str | Path | None = None) -> Case:
    """A shipped case or case folder (optionally with another surrogate), or a grid file with a surrogate."""
    path = Path(name)
    if path.suffix in GRID_SUFFIXES:
        if surrogate is None:
            raise ValueError(f"{path}: a grid file needs a surrogate (--surrogate FILE)")
        return FileCase(path, Path(surrogate))
    case = load_case(name)
    if surrogate is None:
        return case
    return FileCase(case.source, Path(surrogate), case.definition.region)

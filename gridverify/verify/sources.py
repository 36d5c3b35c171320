"""Cases that are not shipped folders: a grid file (a MATPOWER / PGLib ``.m`` case or a pandapower net saved
as ``.json``) with a surrogate file (``surrogate.pt`` as `gridverify train` writes it). They offer what
`gridverify.surrogate.case.Case` offers (``name``, ``data``, ``net``, ``problem``, ``region``, ``surrogate``,
``graph``, ``metrics``, ``folder``), so `verify` and the report take either."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gridverify.grid import AcopfProblem, GridData, build_acopf
from gridverify.grid.net import GRID_SUFFIXES, grid_net, read_grid
from gridverify.ir import Graph
from gridverify.specs import Region
from gridverify.surrogate import AcopfSurrogate, compose
from gridverify.surrogate.case import Case, load_case, read_surrogate


@dataclass(frozen=True, eq=False)
class FileCase:
    """``grid``: a ``.m`` case or a pandapower ``.json`` net; ``surrogate_file``: the surrogate's weights;
    ``region_text``: the default region (no training region is known for a bare file)."""

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
    def net(self) -> Any:
        return grid_net(self.grid)

    @cached_property
    def data(self) -> GridData:
        """The grid; a file that cannot be read or is outside the model raises `GridError` naming it."""
        return read_grid(self.grid)

    @cached_property
    def problem(self) -> AcopfProblem:
        return build_acopf(self.data)

    @cached_property
    def region(self) -> Region:
        return Region.parse(self.region_text, self.data)

    @cached_property
    def surrogate(self) -> AcopfSurrogate:
        return read_surrogate(self.surrogate_file, self.data)

    @cached_property
    def graph(self) -> Graph:
        """``compose(problem, surrogate)``, as `Case.graph`."""
        return compose(self.problem, self.surrogate)

    @property
    def metrics(self) -> dict[str, Any]:
        return {}


def open_case(name: str | Path, surrogate: str | Path | None = None) -> Case | FileCase:
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

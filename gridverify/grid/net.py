"""Grid files and their pandapower nets: the one place (with `gridverify.grid.data` and
`gridverify.grid.replay`) that imports pandapower.

A grid file is a MATPOWER / PGLib-OPF ``.m`` case or a pandapower net saved as ``.json``
(``pandapower.to_json``). `read_grid` gives its `GridData`, `grid_net` a fresh pandapower net of it (for
replays and drawings). Every file that cannot be read, or that holds a net outside the model, raises
`GridError` naming the file. `bus_geo` finds drawing coordinates of a case's buses in pandapower's nets.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp

from gridverify.grid.data import GridData, GridError, from_matpower, from_pandapower, matpower_net

__all__ = ["GRID_SUFFIXES", "bus_geo", "grid_net", "read_grid", "read_net"]

GRID_SUFFIXES = (".m", ".json")  # MATPOWER / PGLib-OPF cases, pandapower nets

# what pandapower raises on a net it cannot convert (UserWarning: a net without a slack, no ext_grid and
# no slack gen); `from_pandapower` raises NotImplementedError for elements outside the model
_NOT_SUPPORTED = (
    NotImplementedError, ValueError, KeyError, IndexError, AttributeError, TypeError, UserWarning,
)  # fmt: skip


def read_grid(path: str | Path) -> GridData:
    """`GridData` of a grid file: a ``.m`` case (`from_matpower`) or a pandapower ``.json`` net
    (`from_pandapower` of `read_net`); other suffixes are refused (ValueError)."""
    path = Path(path)
    if path.suffix.lower() == ".m":
        return from_matpower(path)
    if path.suffix.lower() != ".json":
        raise ValueError(f"{path}: not a grid file (expected a MATPOWER .m case or a pandapower .json net)")
    net = read_net(path)
    try:
        return from_pandapower(net, path.stem)
    except GridError as err:
        raise GridError(f"{path}: {str(err).removeprefix(path.stem + ': ')}") from None
    except _NOT_SUPPORTED as err:
        raise GridError(f"{path}: pandapower net not supported ({_first_line(err)})") from None


def grid_net(path: str | Path) -> Any:
    """A fresh pandapower net of a grid file (``.m``: `matpower_net`; ``.json``: `read_net`)."""
    path = Path(path)
    return read_net(path) if path.suffix.lower() == ".json" else matpower_net(path)


def read_net(path: str | Path) -> Any:
    """The pandapower net saved at ``path`` (``pandapower.to_json``); `GridError` naming the file when it is
    not one (missing, not JSON, another JSON document, an empty net)."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = pp.from_json(str(path))
    except Exception as err:  # pandapower raises UserWarning, AttributeError, KeyError, ... on bad files
        raise GridError(f"{path}: not a pandapower net ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(net, pp.pandapowerNet) or "bus" not in net or len(net.bus) == 0:
        raise GridError(f"{path}: not a pandapower net with buses")
    return net


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


# -- drawing coordinates ---------------------------------------------------------------------------------
def bus_geo(net: Any, data: GridData) -> np.ndarray | None:
    """(N, 2) coordinates of ``data``'s buses: ``net``'s ``bus.geo`` when it has them for every bus, else
    those of the IEEE case of the same name and size in ``pandapower.networks``, else None."""
    for source in (net, _ieee_net(data.name, len(data.ids.bus))):
        xy = _geo(source, data) if source is not None else None
        if xy is not None:
            return xy
    return None


def _geo(net: Any, data: GridData) -> np.ndarray | None:
    if "geo" not in net.bus.columns or data.pandapower is None:
        return None
    geo = net.bus.geo.reindex(data.pandapower.bus)
    if geo.isna().any():
        return None
    return np.array([json.loads(g)["coordinates"][:2] for g in geo])


def _ieee_net(name: str, n_bus: int) -> Any:
    import pandapower.networks as pn

    stem = name.removeprefix("pglib_opf_").split("_")[0]
    if not stem.startswith("case") or not hasattr(pn, stem):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = getattr(pn, stem)()
    return net if len(net.bus) == n_bus else None

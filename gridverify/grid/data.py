"""`GridData`: a case's buses, loads, generators and branches as per-unit numpy arrays, MATPOWER conventions.

With `gridverify.grid.net` (grid files, nets) and `gridverify.grid.replay` (power flows), the only module
that touches pandapower. Two sources, one core (MATPOWER-layout arrays -> `GridData`):

- `from_pandapower(net)`: pandapower's own conversion (``to_ppc`` on a deep copy: the caller's net is never
  modified), so the data is what ``runpp`` solves; ids are pandapower element indices.
- `from_matpower(path)`: a MATPOWER / PGLib-OPF ``.m`` file parsed by matpowercaseframes (the reader behind
  pandapower's ``from_mpc``) with MATPOWER's semantics; ids are bus numbers and 1-based gen / branch rows.
  Not ``from_mpc``'s net: it moves the tap of a transformer whose from bus is the low-voltage side to the
  other end and turns transformer charging into magnetising admittance (pglib case300: 20 branches differ,
  by up to 12 pu). ``GridData.pandapower`` maps the rows to the elements of `matpower_net(path)` all the
  same, for replaying points in pandapower where the two agree (pglib case5 ... case118).

Conventions (MATPOWER / PGLib / PowerModels), per unit on ``base_mva``, angles in rad: a branch is a series
admittance ``y = 1/(r + jx)`` with total shunt ``g + jb`` split half at each end, behind an ideal
transformer ``tap * exp(j shift)`` at the from end (``tap = 1`` for lines); a bus shunt ``gs + j bs``
consumes ``gs vm^2`` and injects ``bs vm^2``; loads are one per bus with nonzero fixed demand (loads,
uncontrollable static generators and ward loads summed); costs are ``c2 pg^2 + c1 pg + c0`` per hour with
``pg`` in pu; no limit is ``rate_a = inf`` (MATPOWER 0) or angle limits ``-inf`` / ``inf`` (MATPOWER 0 or
+-360).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matpowercaseframes import CaseFrames
from pandapower.converter.matpower import from_mpc
from pandapower.converter.pypower.to_ppc import to_ppc
from pandapower.pypower import idx_brch, idx_bus, idx_gen

__all__ = [
    "Branches",
    "Buses",
    "ElementIds",
    "Generators",
    "GridData",
    "GridError",
    "Loads",
    "OperatingPoint",
    "branch_flows",
    "from_matpower",
    "from_pandapower",
    "grid_problems",
    "matpower_net",
    "operating_point",
    "pandapower_ids",
]

Array = np.ndarray
# pandapower's lookups of ppc generator rows (element table = the name without "_controllable")
_GEN_LOOKUPS = ("ext_grid", "gen", "sgen_controllable", "load_controllable", "storage_controllable")
_GEN_SIGN = {"ext_grid": 1.0, "gen": 1.0, "sgen": 1.0, "load": -1.0, "storage": -1.0}  # res p_mw -> output
_BRANCH_RESULTS = {  # element table -> (from-side columns, to-side columns, from- and to-side bus columns)
    "line": (("p_from_mw", "q_from_mvar"), ("p_to_mw", "q_to_mvar"), ("from_bus", "to_bus")),
    "trafo": (("p_hv_mw", "q_hv_mvar"), ("p_lv_mw", "q_lv_mvar"), ("hv_bus", "lv_bus")),
    "impedance": (("p_from_mw", "q_from_mvar"), ("p_to_mw", "q_to_mvar"), ("from_bus", "to_bus")),
}


class GridError(ValueError):
    """A grid file or net that cannot be read or is outside the model: the message names the source and
    every problem found (see `grid_problems`)."""


class _Record:
    """Base of the frozen array records: stores every array field as a read-only float64 / int64 copy."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                frozen = np.array(value, dtype=np.int64 if value.dtype.kind in "iu" else np.float64)
                frozen.setflags(write=False)
                object.__setattr__(self, f.name, frozen)


@dataclass(frozen=True, eq=False)
class ElementIds(_Record):
    """Which element of a source each bus, generator and branch row is: e.g. ``("trafo", 3)``."""

    bus: Array  # (N,) int
    gen_kinds: tuple[str, ...]  # (G,)
    gen: Array  # (G,) int
    branch_kinds: tuple[str, ...]  # (L,)
    branch: Array  # (L,) int


@dataclass(frozen=True, eq=False)
class Buses(_Record):
    """N buses: voltage limits, shunts (at vm = 1), ``ref`` positions with their fixed angles."""

    vmin_pu: Array
    vmax_pu: Array
    gs_pu: Array
    bs_pu: Array
    ref: Array
    ref_va_rad: Array


@dataclass(frozen=True, eq=False)
class Loads(_Record):
    """D fixed demands (MATPOWER convention: one per bus with nonzero demand): bus positions and values."""

    bus: Array
    p_pu: Array
    q_pu: Array


@dataclass(frozen=True, eq=False)
class Generators(_Record):
    """G dispatchable units: bus positions, limits and cost ``c2*pg^2 + c1*pg + c0`` per hour (pg in pu)."""

    bus: Array
    pmin_pu: Array
    pmax_pu: Array
    qmin_pu: Array
    qmax_pu: Array
    cost_c2_per_pu2: Array
    cost_c1_per_pu: Array
    cost_c0: Array


@dataclass(frozen=True, eq=False)
class Branches(_Record):
    """L pi-model branches (lines and transformers); see the module docstring for the model."""

    from_bus: Array
    to_bus: Array
    r_pu: Array
    x_pu: Array
    g_pu: Array
    b_pu: Array
    tap: Array
    shift_rad: Array
    rate_a_pu: Array
    angmin_rad: Array
    angmax_rad: Array


@dataclass(frozen=True, eq=False)
class GridData:
    """A case in per unit. ``ids``: the case's own element ids (used in constraint names); ``pandapower``:
    the pandapower elements of each row (for reading ``res_*`` tables), or None."""

    name: str
    base_mva: float
    buses: Buses
    loads: Loads
    gens: Generators
    branches: Branches
    ids: ElementIds
    pandapower: ElementIds | None = None

    def __post_init__(self) -> None:
        n, g, L = len(self.buses.vmin_pu), len(self.gens.bus), len(self.branches.from_bus)
        if (len(self.ids.bus), len(self.ids.gen), len(self.ids.branch)) != (n, g, L):
            raise ValueError("element ids do not match the buses, generators and branches")
        for at in (self.loads.bus, self.gens.bus, self.branches.from_bus, self.branches.to_bus):
            if at.size and not (at.min() >= 0 and at.max() < n):
                raise ValueError("a bus position is out of range")


@dataclass(frozen=True, eq=False)
class OperatingPoint(_Record):
    """A state of the grid in per unit: bus voltages (N,), generator output (G,), load demand (D,)."""

    vm_pu: Array
    va_rad: Array
    pg_pu: Array
    qg_pu: Array
    pd_pu: Array
    qd_pu: Array


@dataclass(frozen=True)
class _Arrays:
    """MATPOWER-layout arrays of in-service elements; ``branch_g``: total branch shunt conductance (pu)."""

    base_mva: float
    bus: Array
    gen: Array
    branch: Array
    gencost: Array | None
    branch_g: Array


# -- the core: MATPOWER arrays -> GridData ---------------------------------------------------------------
def _grid_from_arrays(name: str, a: _Arrays, ids: ElementIds, pandapower: ElementIds | None) -> GridData:
    problems = grid_problems(a, ids)
    if problems:
        raise GridError(f"{name}: " + "; ".join(problems))
    position = {int(b): i for i, b in enumerate(a.bus[:, idx_bus.BUS_I])}
    return GridData(
        name=name,
        base_mva=a.base_mva,
        buses=_buses(a),
        loads=_loads(a),
        gens=_gens(a, position),
        branches=_branches(a, position),
        ids=ids,
        pandapower=pandapower,
    )


def grid_problems(a: _Arrays, ids: ElementIds) -> list[str]:
    """Why the in-service part of a case cannot be verified (empty: it can). MATPOWER's conventions hold:
    ``rate_a = 0`` means no limit and is fine, a negative rating is an error; a branch needs a nonzero
    impedance ``r + jx`` (its admittance ``1/(r + jx)`` would be infinite); every bus must be connected to
    a reference bus by in-service branches (an island has no angle reference and no slack); the case
    needs a reference bus; numbers must be finite. Several generators on one bus are fine (their
    injections add up)."""
    problems = (
        [] if a.base_mva > 0 and np.isfinite(a.base_mva) else [f"baseMVA must be > 0, got {a.base_mva}"]
    )
    br, bus = a.branch, a.bus
    rate = br[:, idx_brch.RATE_A]
    negative = "negative rate_a (a thermal rating must be >= 0; 0 means unlimited)"
    problems += _rows(negative, rate < 0, ids.branch, "branch")
    zero = (br[:, idx_brch.BR_R] == 0) & (br[:, idx_brch.BR_X] == 0)
    problems += _rows("zero impedance (r = x = 0; merge the two buses instead)", zero, ids.branch, "branch")
    for what, values, rows, kind in (
        ("non-finite r, x or b", br[:, [idx_brch.BR_R, idx_brch.BR_X, idx_brch.BR_B]], ids.branch, "branch"),
        (
            "non-finite demand or shunt",
            bus[:, [idx_bus.PD, idx_bus.QD, idx_bus.GS, idx_bus.BS]],
            ids.bus,
            "bus",
        ),
    ):
        problems += _rows(what, ~np.all(np.isfinite(values), axis=1), rows, kind)
    ref = bus[:, idx_bus.BUS_TYPE] == idx_bus.REF
    if not ref.any():
        problems.append("no reference (slack) bus: give one bus type 3")
    else:
        problems += _rows("islanded: not connected to a reference bus by in-service branches",
                          ~_reached(bus, br, ref), ids.bus, "bus")  # fmt: skip
    return problems


def _rows(what: str, bad: Array, ids: Array, kind: str) -> list[str]:
    if not np.any(bad):
        return []
    named = [str(int(i)) for i in np.asarray(ids)[bad][:10]]
    more = f" and {int(np.sum(bad)) - 10} more" if np.sum(bad) > 10 else ""
    return [f"{kind} {', '.join(named)}{more}: {what}"]


def _reached(bus: Array, branch: Array, start: Array) -> Array:
    """Which buses are connected to a ``start`` bus (N,) bool, over the branches with nonzero status."""
    position = {int(b): i for i, b in enumerate(bus[:, idx_bus.BUS_I])}
    neighbours: list[list[int]] = [[] for _ in range(len(bus))]
    for row in branch[branch[:, idx_brch.BR_STATUS] != 0]:
        f, t = position.get(int(row[idx_brch.F_BUS])), position.get(int(row[idx_brch.T_BUS]))
        if f is not None and t is not None:
            neighbours[f].append(t)
            neighbours[t].append(f)
    reached = np.array(start, dtype=bool)
    frontier = list(np.flatnonzero(reached))
    while frontier:
        for j in neighbours[frontier.pop()]:
            if not reached[j]:
                reached[j] = True
                frontier.append(j)
    return reached


def _buses(a: _Arrays) -> Buses:
    ref = np.flatnonzero(a.bus[:, idx_bus.BUS_TYPE] == idx_bus.REF)
    return Buses(
        vmin_pu=np.nan_to_num(a.bus[:, idx_bus.VMIN], nan=-np.inf),
        vmax_pu=np.nan_to_num(a.bus[:, idx_bus.VMAX], nan=np.inf),
        gs_pu=a.bus[:, idx_bus.GS] / a.base_mva,
        bs_pu=a.bus[:, idx_bus.BS] / a.base_mva,
        ref=ref,
        ref_va_rad=np.deg2rad(a.bus[ref, idx_bus.VA]),
    )


def _loads(a: _Arrays) -> Loads:
    pd, qd = a.bus[:, idx_bus.PD] / a.base_mva, a.bus[:, idx_bus.QD] / a.base_mva
    at = np.flatnonzero((pd != 0) | (qd != 0))
    return Loads(bus=at, p_pu=pd[at], q_pu=qd[at])


def _limit(values: Array, unlimited: float) -> Array:
    """NaN and pandapower's stand-in ``+-1e9`` (no limit given) become ``+-inf``."""
    return np.where(np.isnan(values) | (np.abs(values) >= 1e9), unlimited, values)


def _gens(a: _Arrays, position: dict[int, int]) -> Generators:
    g, base = a.gen, a.base_mva
    c2, c1, c0 = _poly_costs(a.gencost, len(g))
    return Generators(
        bus=np.array([position[int(b)] for b in g[:, idx_gen.GEN_BUS]], dtype=np.int64),
        pmin_pu=_limit(g[:, idx_gen.PMIN], -np.inf) / base,
        pmax_pu=_limit(g[:, idx_gen.PMAX], np.inf) / base,
        qmin_pu=_limit(g[:, idx_gen.QMIN], -np.inf) / base,
        qmax_pu=_limit(g[:, idx_gen.QMAX], np.inf) / base,
        cost_c2_per_pu2=c2 * base**2,
        cost_c1_per_pu=c1 * base,
        cost_c0=c0,
    )


def _poly_costs(gencost: Array | None, n_gen: int) -> tuple[Array, Array, Array]:
    """(c2, c1, c0) per generator in MW units from MATPOWER ``gencost`` (model 2; zero when absent)."""
    if gencost is None or len(gencost) == 0:
        return np.zeros(n_gen), np.zeros(n_gen), np.zeros(n_gen)
    rows = np.asarray(gencost[:n_gen], dtype=np.float64)
    if np.any(rows[:, 0] != 2):
        raise NotImplementedError("only polynomial generator costs (gencost model 2) are supported")
    coeffs = np.zeros((n_gen, 3))
    for i, row in enumerate(rows):
        c = row[4 : 4 + int(row[3])][::-1]  # ascending order: c0, c1, c2, ...
        if np.any(c[3:] != 0):
            raise NotImplementedError(f"generator cost of degree > 2 in gencost row {i}")
        coeffs[i, : min(3, len(c))] = c[:3]
    return coeffs[:, 2], coeffs[:, 1], coeffs[:, 0]


def _branches(a: _Arrays, position: dict[int, int]) -> Branches:
    br = a.branch
    tap, rate = br[:, idx_brch.TAP], br[:, idx_brch.RATE_A]
    return Branches(
        from_bus=np.array([position[int(b)] for b in br[:, idx_brch.F_BUS]], dtype=np.int64),
        to_bus=np.array([position[int(b)] for b in br[:, idx_brch.T_BUS]], dtype=np.int64),
        r_pu=br[:, idx_brch.BR_R],
        x_pu=br[:, idx_brch.BR_X],
        g_pu=a.branch_g,
        b_pu=br[:, idx_brch.BR_B],
        tap=np.where(tap == 0, 1.0, tap),
        shift_rad=np.deg2rad(br[:, idx_brch.SHIFT]),
        rate_a_pu=np.where((rate > 0) & (rate < 1e10), rate, np.inf) / a.base_mva,
        angmin_rad=_angle_limit(br[:, idx_brch.ANGMIN], -np.inf),
        angmax_rad=_angle_limit(br[:, idx_brch.ANGMAX], np.inf),
    )


def _angle_limit(degrees: Array, unlimited: float) -> Array:
    """MATPOWER's rule: a limit binds only when nonzero and strictly inside (-360, 360) degrees."""
    active = (degrees != 0) & (np.abs(degrees) < 360) & np.isfinite(degrees)
    return np.where(active, np.deg2rad(np.where(active, degrees, 0.0)), unlimited)


# -- MATPOWER / PGLib .m files -------------------------------------------------------------------------
def from_matpower(path: str | Path) -> GridData:
    """A MATPOWER / PGLib-OPF ``.m`` case with MATPOWER's semantics (see the module docstring)."""
    path = Path(path)
    arrays, ids = _read_matpower(path)
    try:
        return _grid_from_arrays(path.stem, arrays, ids, _pandapower_ids_of_mpc(matpower_net(path), ids))
    except GridError as err:
        raise GridError(f"{path}: {str(err).removeprefix(path.stem + ': ')}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def matpower_net(path: str | Path) -> Any:
    """The pandapower net that pandapower's converter (``from_mpc``) makes of a ``.m`` case. (A case
    without transformers makes pandapower set an empty column in a way pandas deprecates: that
    FutureWarning, about pandapower's own code, is silenced here, and so is the converter's log note that
    MATPOWER branches with a tap ratio between equal voltage levels become transformers.)"""
    log = logging.getLogger("pandapower.converter.pypower.from_ppc")
    level = log.level
    log.setLevel(logging.ERROR)  # its note on same-voltage transformers, on every call
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Setting an item of incompatible dtype", FutureWarning)
            return from_mpc(str(path))
    finally:
        log.setLevel(level)


def _read_matpower(path: Path) -> tuple[_Arrays, ElementIds]:
    if not path.is_file():
        raise GridError(f"{path}: no such file")
    try:
        mpc = CaseFrames(str(path)).to_mpc()
        bus, gen, branch = (np.asarray(mpc[k], dtype=np.float64) for k in ("bus", "gen", "branch"))
        float(mpc["baseMVA"])
    except Exception as err:  # matpowercaseframes fails on bad files with any kind of error
        detail = "empty file" if path.stat().st_size == 0 else f"{type(err).__name__}: {_first_line(err)}"
        raise GridError(f"{path}: not a readable MATPOWER case ({detail})") from None
    if bus.ndim != 2 or gen.ndim != 2 or branch.ndim != 2 or min(len(bus), len(gen), len(branch)) == 0:
        raise GridError(f"{path}: not a readable MATPOWER case (empty or malformed bus, gen or branch table)")
    widths = {
        "bus": (bus, idx_bus.VMIN + 1),
        "gen": (gen, idx_gen.PMIN + 1),
        "branch": (branch, idx_brch.ANGMAX + 1),
    }
    short = [k for k, (table, width) in widths.items() if table.shape[1] < width]
    if short:
        raise GridError(f"{path}: not a readable MATPOWER case (too few columns in {', '.join(short)})")
    live = {int(b) for b in bus[bus[:, idx_bus.BUS_TYPE] != idx_bus.NONE, idx_bus.BUS_I]}
    bus_on = np.isin(bus[:, idx_bus.BUS_I], list(live))
    gen_on = (gen[:, idx_gen.GEN_STATUS] > 0) & np.isin(gen[:, idx_gen.GEN_BUS], list(live))
    br_on = (branch[:, idx_brch.BR_STATUS] != 0) & np.isin(branch[:, idx_brch.F_BUS], list(live))
    br_on &= np.isin(branch[:, idx_brch.T_BUS], list(live))
    gencost = np.asarray(mpc["gencost"], dtype=np.float64)[: len(gen)][gen_on] if "gencost" in mpc else None
    arrays = _Arrays(
        float(mpc["baseMVA"]), bus[bus_on], gen[gen_on], branch[br_on], gencost, np.zeros(br_on.sum())
    )
    ids = ElementIds(
        bus=bus[bus_on, idx_bus.BUS_I].astype(np.int64),
        gen_kinds=("gen",) * int(gen_on.sum()),
        gen=np.flatnonzero(gen_on) + 1,
        branch_kinds=("branch",) * int(br_on.sum()),
        branch=np.flatnonzero(br_on) + 1,
    )
    return arrays, ids


def _pandapower_ids_of_mpc(net: Any, ids: ElementIds) -> ElementIds:
    """Map MATPOWER rows to the elements ``from_mpc`` created (bus index = bus number - 1)."""
    gens = net._from_ppc_lookups["gen"].iloc[ids.gen - 1]
    branches = net._from_ppc_lookups["branch"].iloc[ids.branch - 1]
    return ElementIds(
        bus=ids.bus - 1,
        gen_kinds=tuple(gens["element_type"]),
        gen=gens["element"].to_numpy().astype(np.int64),
        branch_kinds=tuple(branches["element_type"]),
        branch=branches["element"].to_numpy().astype(np.int64),
    )


# -- pandapower nets -----------------------------------------------------------------------------------
def from_pandapower(net: Any, name: str = "") -> GridData:
    """The case pandapower's power flow solves (``to_ppc`` on a deep copy; ``net`` is left untouched)."""
    work = copy.deepcopy(net)
    _check_supported(work)
    has_limits = "max_vm_pu" in work.bus.columns and "min_vm_pu" in work.bus.columns
    ppci = to_ppc(work, init="flat", calculate_voltage_angles=True, trafo_model="t",
                  take_slack_vm_limits=not has_limits)  # fmt: skip
    dropped = _dropped_buses(work, len(ppci["bus"]))
    if dropped:
        listed = ", ".join(map(str, dropped[:10])) + (
            f" and {len(dropped) - 10} more" if len(dropped) > 10 else ""
        )
        raise GridError(
            f"{name or 'pandapower net'}: bus {listed}: islanded (no path to a slack; pandapower drops it)"
        )
    ids = _pandapower_ids(work, ppci)
    real = {k: np.real(ppci[k]) for k in ("bus", "gen", "branch")}
    if not has_limits:  # pandapower's stand-ins 0 and 2 pu
        real["bus"][:, [idx_bus.VMIN, idx_bus.VMAX]] = np.nan
    arrays = _Arrays(float(ppci["baseMVA"]), **real, gencost=ppci.get("gencost"), branch_g=_branch_g(ppci))
    return _grid_from_arrays(name or str(getattr(net, "name", "") or "pandapower net"), arrays, ids, ids)


def _dropped_buses(net: Any, n: int) -> list[int]:
    """In-service pandapower buses that ``to_ppc`` left out of its ``n`` buses (islands without a slack)."""
    lookup = np.asarray(net._pd2ppc_lookups["bus"])
    on = net.bus.index[net.bus.in_service.astype(bool)]
    return [int(b) for b in on if not (b < len(lookup) and 0 <= lookup[b] < n)]


def _check_supported(net: Any) -> None:
    """Voltage-dependent loads and elements that add auxiliary buses are outside the MATPOWER model."""
    problems = [f"in-service {t}" for t in ("trafo3w", "xward", "dcline") if _in_service(net, t)]
    loads = net.load[net.load.in_service]
    vd = [c for c in loads.columns if c.startswith(("const_z", "const_i"))]
    if len(loads) and vd and np.any(loads[vd].to_numpy(dtype=float) != 0):
        problems.append("voltage-dependent loads (const_z / const_i percentages)")
    if problems:
        raise NotImplementedError("GridData does not model: " + ", ".join(problems))


def _in_service(net: Any, table: str) -> bool:
    return table in net and len(net[table]) > 0 and bool(net[table].in_service.any())


def _branch_g(ppci: dict[str, Any]) -> Array:
    """Total branch shunt conductance, which ``to_ppc`` keeps beside the branch array (ppc rows)."""
    for extra in ("branch_r_asym", "branch_x_asym", "branch_g_asym", "branch_b_asym"):
        if extra in ppci and np.any(ppci[extra] != 0):
            raise NotImplementedError(f"asymmetric branch impedances ({extra}) are not modelled")
    n = len(ppci["branch"])
    if "branch_g" not in ppci:
        return np.zeros(n)
    g = np.real(np.asarray(ppci["branch_g"]))
    return g[ppci["internal"]["branch_is"]] if len(g) != n else g


def _pandapower_ids(net: Any, ppci: dict[str, Any]) -> ElementIds:
    gen_kinds, gen = _gen_owners(net, ppci)
    branch_kinds, branch = _branch_owners(net, ppci)
    return ElementIds(_bus_owners(net, ppci), gen_kinds, gen, branch_kinds, branch)


def _bus_owners(net: Any, ppci: dict[str, Any]) -> Array:
    """The pandapower bus of each ppci bus (the smallest index where closed switches merge buses)."""
    lookup, n = net._pd2ppc_lookups["bus"], len(ppci["bus"])
    owner = np.full(n, -1, dtype=np.int64)
    for b in sorted(net.bus.index, reverse=True):
        if 0 <= lookup[b] < n:
            owner[lookup[b]] = b
    if np.any(owner < 0):
        open_lines = int(((net.switch.et == "l") & ~net.switch.closed.astype(bool)).sum())
        raise NotImplementedError(
            f"{int(np.sum(owner < 0))} auxiliary buses without a pandapower bus (from {open_lines} open line"
            " switches, trafo3w star points or xwards) are not modelled"
        )
    return owner


def _gen_owners(net: Any, ppci: dict[str, Any]) -> tuple[tuple[str, ...], Array]:
    gen_is = np.asarray(ppci["internal"]["gen_is"], dtype=bool)
    kinds, ids = [""] * len(gen_is), np.full(len(gen_is), -1, dtype=np.int64)
    for lookup in _GEN_LOOKUPS:
        rows = net._pd2ppc_lookups.get(lookup)
        for idx in [] if rows is None else np.flatnonzero(np.asarray(rows) >= 0):
            kinds[rows[idx]], ids[rows[idx]] = lookup.removesuffix("_controllable"), idx
    if np.any(ids[gen_is] < 0):
        raise NotImplementedError("generators of unsupported pandapower elements")
    return tuple(k for k, on in zip(kinds, gen_is) if on), ids[gen_is]


def _branch_owners(net: Any, ppci: dict[str, Any]) -> tuple[tuple[str, ...], Array]:
    branch_is = np.asarray(ppci["internal"]["branch_is"], dtype=bool)
    kinds, ids = [""] * len(branch_is), np.full(len(branch_is), -1, dtype=np.int64)
    for table, (start, stop) in net._pd2ppc_lookups["branch"].items():
        if table not in _BRANCH_RESULTS or stop - start != len(net[table]):
            raise NotImplementedError(f"branches of pandapower element {table!r} are not supported")
        kinds[start:stop] = [table] * (stop - start)
        ids[start:stop] = net[table].index.to_numpy()
    return tuple(k for k, on in zip(kinds, branch_is) if on), ids[branch_is]


# -- pandapower results as per-unit values ---------------------------------------------------------------
def operating_point(data: GridData, net: Any) -> OperatingPoint:
    """The solved state of ``net`` (after ``runpp``) in ``data``'s order; demand from ``data.loads``."""
    pp = pandapower_ids(data)
    res = net.res_bus.loc[pp.bus]
    pg, qg = np.zeros(len(pp.gen)), np.zeros(len(pp.gen))
    for i, (kind, idx) in enumerate(zip(pp.gen_kinds, pp.gen)):
        row = net[f"res_{kind}"].loc[idx]
        pg[i], qg[i] = _GEN_SIGN[kind] * row["p_mw"], _GEN_SIGN[kind] * row["q_mvar"]
    return OperatingPoint(
        vm_pu=res["vm_pu"].to_numpy(),
        va_rad=np.deg2rad(res["va_degree"].to_numpy()),
        pg_pu=pg / data.base_mva,
        qg_pu=qg / data.base_mva,
        pd_pu=data.loads.p_pu,
        qd_pu=data.loads.q_pu,
    )


def branch_flows(data: GridData, net: Any) -> dict[str, Array]:
    """pandapower's solved branch flows ``p_from, q_from, p_to, q_to`` (pu) at ``data``'s branch ends (the
    ends of pandapower's element, swapped where ``from_mpc`` made the MATPOWER to bus the hv side)."""
    pp = pandapower_ids(data)
    out = {k: np.zeros(len(pp.branch)) for k in ("p_from", "q_from", "p_to", "q_to")}
    from_pp = pp.bus[data.branches.from_bus]
    for i, (kind, idx) in enumerate(zip(pp.branch_kinds, pp.branch)):
        side_f, side_t, (col_f, col_t) = _BRANCH_RESULTS[kind]
        if net[kind].at[idx, col_t] == from_pp[i] != net[kind].at[idx, col_f]:  # from_mpc swapped the ends
            side_f, side_t = side_t, side_f
        res = net[f"res_{kind}"].loc[idx]
        out["p_from"][i], out["q_from"][i] = res[side_f[0]], res[side_f[1]]
        out["p_to"][i], out["q_to"][i] = res[side_t[0]], res[side_t[1]]
    return {k: v / data.base_mva for k, v in out.items()}


def pandapower_ids(data: GridData) -> ElementIds:
    """The pandapower elements of ``data``'s rows (ValueError for a case not built from a pandapower net)."""
    if data.pandapower is None:
        raise ValueError(f"{data.name}: no pandapower element ids (not built from a pandapower net)")
    return data.pandapower

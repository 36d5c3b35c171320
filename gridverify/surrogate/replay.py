"""Replay a surrogate's dispatch in pandapower: write the loads and the generator set-points into the net,
run pandapower's own power flow (``runpp``), and compare with what the compiled constraint graph says at the
surrogate's point.

The set-points are what a dispatcher would send: active power ``pg`` of every PV generator and voltage
magnitude ``vm`` at every generator bus (and the slack's ``vm`` and reference angle); units pandapower models
as fixed injections (a static generator, e.g. the second unit on a MATPOWER bus) get the surrogate's ``pg``
and ``qg``. ``runpp`` then decides the slack's pg, the PV units' qg, and the voltages of the other buses.
Where the surrogate's dispatch is power-flow feasible (zero balance residual) the replayed state is the
surrogate's, and the graph's branch flows equal pandapower's; where it is not, `Replay` reports by how much
they differ. ``model_error_pu`` checks the graph itself: its flows at the replayed state against
pandapower's (a few 1e-9 pu when the models agree).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower as pp
import torch

from gridverify.grid.data import GridData, OperatingPoint, branch_flows, operating_point, pandapower_ids
from gridverify.ir.graph import Graph

__all__ = ["Replay", "graph_values", "replay", "surrogate_point", "write_loads", "write_setpoints"]

FLOWS = ("p_from", "q_from", "p_to", "q_to")


@dataclass(frozen=True)
class Replay:
    """One replayed sample (pu, rad). ``flow_error_pu``: graph flows at the surrogate's point vs pandapower's
    after ``runpp``; ``model_error_pu``: graph flows at pandapower's solved state vs pandapower's;
    ``balance_residual_pu``: largest |p_balance|, |q_balance| of the surrogate's point; the rest: largest
    difference between the surrogate's and the replayed vm, va, qg and the slack generators' pg."""

    converged: bool
    flow_error_pu: float
    model_error_pu: float
    balance_residual_pu: float
    vm_error_pu: float
    va_error_rad: float
    qg_error_pu: float
    slack_pg_error_pu: float


def replay(
    data: GridData, net: Any, graph: Graph, load: np.ndarray, dispatch: Mapping[str, np.ndarray]
) -> Replay:
    """Replay ``dispatch`` (``pg_pu``, ``qg_pu`` (G,), ``vm_pu``, ``va_rad`` (N,)) at ``load`` (2D,) in a
    copy of ``net`` (pandapower's net of ``data``'s case; left untouched). ``graph``: ``compile_acopf``'s."""
    work = copy.deepcopy(net)
    write_loads(data, work, load)
    write_setpoints(data, work, dispatch)
    surrogate = graph_values(graph, surrogate_point(data, load, dispatch))
    try:
        pp.runpp(work, calculate_voltage_angles=True, init="dc", numba=False, tolerance_mva=1e-10)
    except pp.LoadflowNotConverged:
        nan = float("nan")
        return Replay(False, nan, nan, _balance(surrogate), nan, nan, nan, nan)
    solved = operating_point(data, work)
    solved = OperatingPoint(solved.vm_pu, solved.va_rad, solved.pg_pu, solved.qg_pu, *_split(load))
    flows, at_solved = branch_flows(data, work), graph_values(graph, solved)
    slack = np.array([k == "ext_grid" for k in pandapower_ids(data).gen_kinds])
    return Replay(
        converged=True,
        flow_error_pu=max(float(np.abs(surrogate[k] - flows[k]).max()) for k in FLOWS),
        model_error_pu=max(float(np.abs(at_solved[k] - flows[k]).max()) for k in FLOWS),
        balance_residual_pu=_balance(surrogate),
        vm_error_pu=float(np.abs(solved.vm_pu - dispatch["vm_pu"]).max()),
        va_error_rad=float(np.abs(solved.va_rad - dispatch["va_rad"]).max()),
        qg_error_pu=float(np.abs(solved.qg_pu - dispatch["qg_pu"]).max()),
        slack_pg_error_pu=float(np.abs(solved.pg_pu - dispatch["pg_pu"])[slack].max(initial=0.0)),
    )


def _split(load: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = load.size // 2
    return load[:d], load[d:]


def write_loads(data: GridData, net: Any, load: np.ndarray) -> None:
    """Write ``load`` (2D,) pu into ``net`` (modified in place: pass a copy): each case load (one per bus)
    onto that bus's first in-service pandapower load (one is created where the bus has none), the others
    set to 0. Static generators that are not dispatchable units of ``data`` are fixed injections the case
    already nets out of its bus demand, so they are set to 0 too (no double counting)."""
    pd, qd = _split(load)
    buses = pandapower_ids(data).bus[data.loads.bus]
    net.load[["p_mw", "q_mvar"]] = 0.0
    for bus, p, q in zip(buses, pd, qd):
        rows = net.load.index[(net.load.bus == bus) & net.load.in_service]
        row = rows[0] if len(rows) else pp.create_load(net, int(bus), 0.0, 0.0, name="gridverify demand")
        net.load.loc[row, ["p_mw", "q_mvar"]] = p * data.base_mva, q * data.base_mva
    ids = pandapower_ids(data)
    units = {int(i) for k, i in zip(ids.gen_kinds, ids.gen) if k == "sgen"}
    fixed = [i for i in net.sgen.index if i not in units]
    net.sgen.loc[fixed, ["p_mw", "q_mvar"]] = 0.0


# injection sign of each pandapower element kind that can be a dispatchable unit (loads consume)
_INJECTION_SIGN = {"sgen": 1.0, "load": -1.0, "storage": -1.0}


def write_setpoints(data: GridData, net: Any, dispatch: Mapping[str, np.ndarray]) -> None:
    """Write the set-points of ``dispatch`` into ``net`` (in place): vm and the angle of every ``ext_grid``
    (the slack); pg and vm of every ``gen`` (PV); pg and qg of every other unit (``sgen``, controllable
    ``load`` / ``storage``: fixed injections in a power flow). The slack's pg and the PV units' qg are
    left to the power flow."""
    ids = pandapower_ids(data)
    for g, (kind, idx) in enumerate(zip(ids.gen_kinds, ids.gen)):
        bus = int(data.gens.bus[g])
        if kind == "ext_grid":
            net.ext_grid.at[idx, "vm_pu"] = dispatch["vm_pu"][bus]
            net.ext_grid.at[idx, "va_degree"] = np.rad2deg(dispatch["va_rad"][bus])
        elif kind == "gen":
            net.gen.at[idx, "p_mw"] = dispatch["pg_pu"][g] * data.base_mva
            net.gen.at[idx, "vm_pu"] = dispatch["vm_pu"][bus]
        elif kind in _INJECTION_SIGN:
            sign = _INJECTION_SIGN[kind]
            net[kind].at[idx, "p_mw"] = sign * dispatch["pg_pu"][g] * data.base_mva
            net[kind].at[idx, "q_mvar"] = sign * dispatch["qg_pu"][g] * data.base_mva
        else:
            raise NotImplementedError(f"replay of {kind} generators is not supported")


def surrogate_point(data: GridData, load: np.ndarray, dispatch: Mapping[str, np.ndarray]) -> OperatingPoint:
    return OperatingPoint(
        dispatch["vm_pu"], dispatch["va_rad"], dispatch["pg_pu"], dispatch["qg_pu"], *_split(load)
    )


def graph_values(graph: Graph, point: OperatingPoint) -> dict[str, np.ndarray]:
    """Every output of ``graph`` (`compile_acopf`'s) at ``point``, each (n,)."""
    feeds = {
        "vm_pu": point.vm_pu, "va_rad": point.va_rad, "pg_pu": point.pg_pu, "qg_pu": point.qg_pu,
        "pd_pu": point.pd_pu, "qd_pu": point.qd_pu,
    }  # fmt: skip
    out = graph.forward({k: torch.as_tensor(np.array(v))[None] for k, v in feeds.items()})
    assert isinstance(out, dict)
    return {k: v[0].numpy() for k, v in out.items()}


def _balance(values: Mapping[str, np.ndarray]) -> float:
    return float(max(np.abs(values["p_balance"]).max(), np.abs(values["q_balance"]).max()))

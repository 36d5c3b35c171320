"""The one replay: a surrogate's dispatch at a load, solved by pandapower's power flow (``runpp``).

The set-points are what a dispatcher would send: active power ``pg`` of every PV generator and voltage
magnitude ``vm`` at every generator bus (and the slack's ``vm`` and reference angle); units pandapower models
as fixed injections (a static generator, e.g. the second unit on a MATPOWER bus; a controllable load or
storage) get the surrogate's ``pg`` and ``qg``. They are written, with the loads, into a copy of the case's
net (`write_loads`, `write_setpoints`), and ``runpp`` decides the slack's pg, the PV units' qg, and the
voltages of the other buses: the slack balances whatever the dispatch leaves unbalanced, and voltages and
flows follow the physics instead of the surrogate.

`power_flow` returns the solved net with the compiled constraint graph's values at the surrogate's point and
at pandapower's solved state. Its callers differ in how hard the power flow is solved (`PowerFlowSettings`):
`WITNESS` for the counterexamples of a verification (`gridverify.verify.replay`), `MODEL_CHECK` for the
training data checks (`gridverify.surrogate.replay`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandapower as pp
import torch

from gridverify.grid.data import GridData, OperatingPoint, branch_flows, operating_point, pandapower_ids
from gridverify.grid.families import family as family_of
from gridverify.ir.graph import Graph

__all__ = [
    "MODEL_CHECK",
    "RESULT_COLUMNS",
    "WITNESS",
    "PowerFlow",
    "PowerFlowSettings",
    "element_results",
    "graph_values",
    "power_flow",
    "surrogate_point",
    "write_loads",
    "write_setpoints",
]


@dataclass(frozen=True)
class PowerFlowSettings:
    """pandapower ``runpp`` settings of a replay. Every replay starts from a DC power flow (``init="dc"``),
    computes voltage angles and runs without numba; ``tolerance_mva``: the largest power mismatch (MVA) at
    convergence (pandapower's default 1e-8); ``max_iteration``: Newton-Raphson steps before the power flow
    counts as not converged (``"auto"``: pandapower's default, 10)."""

    tolerance_mva: float = 1e-8
    max_iteration: int | str = "auto"


# A verification's witnesses are often far from any feasible dispatch: 30 Newton steps before a replay
# reports "not converged", pandapower's tolerance (its states are compared with tolerances of 1e-6 and more).
WITNESS = PowerFlowSettings(max_iteration=30)
# Training data checks compare the graph's flows at pandapower's state with pandapower's own to a few
# 1e-9 pu: solved to 1e-10 MVA, pandapower's iteration limit.
MODEL_CHECK = PowerFlowSettings(tolerance_mva=1e-10)


@dataclass(frozen=True)
class PowerFlow:
    """pandapower's answer at one load vector: the solved net (a copy) and, per graph output, its values (n,)
    at the surrogate's point (``surrogate``) and at pandapower's solved state (``pandapower``); ``state``:
    that solved state with the replayed load (both None when the power flow did not converge);
    ``dispatch``: the surrogate's output that was replayed."""

    net: Any
    converged: bool
    surrogate: Mapping[str, np.ndarray]
    pandapower: Mapping[str, np.ndarray] | None
    state: OperatingPoint | None
    dispatch: Mapping[str, np.ndarray]


def power_flow(
    data: GridData,
    net: Any,
    graph: Graph,
    load: np.ndarray,
    dispatch: Mapping[str, np.ndarray],
    settings: PowerFlowSettings,
) -> PowerFlow:
    """Replay ``dispatch`` (``pg_pu``, ``qg_pu`` (G,), ``vm_pu``, ``va_rad`` (N,)) at ``load`` (2D,) in a
    copy of ``net`` (pandapower's net of ``data``'s case; left untouched), solved with ``settings``.
    ``graph``: `compile_acopf`'s (or any graph of the same inputs)."""
    work = copy.deepcopy(net)
    write_loads(data, work, load)
    write_setpoints(data, work, dispatch)
    at_surrogate = graph_values(graph, surrogate_point(data, load, dispatch))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pandas deprecations inside pandapower
            pp.runpp(work, numba=False, calculate_voltage_angles=True, init="dc",
                     tolerance_mva=settings.tolerance_mva, max_iteration=settings.max_iteration)  # fmt: skip
    except pp.LoadflowNotConverged:
        return PowerFlow(work, False, at_surrogate, None, None, dispatch)
    pd, qd = _split(load)
    solved = replace(operating_point(data, work), pd_pu=pd, qd_pu=qd)
    return PowerFlow(work, True, at_surrogate, graph_values(graph, solved), solved, dispatch)


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
    """The operating point the surrogate claims at ``load``: its dispatch and the load."""
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


# -- pandapower's own numbers for one element --------------------------------------------------------------
# pandapower element kind -> its res_* columns kept in a certificate. ``loading_percent`` is against
# pandapower's own rating (max_i_ka at the solved voltage, a transformer's sn_mva), not the case's rate_a:
# `element_results` adds ``s_from_mva`` / ``s_to_mva`` and ``rate_a_mva`` for that.
RESULT_COLUMNS = {
    "bus": ("vm_pu", "va_degree", "p_mw", "q_mvar"),
    "line": ("loading_percent", "p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar", "i_ka"),
    "trafo": ("loading_percent", "p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar"),
    "impedance": ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"),
    "gen": ("p_mw", "q_mvar", "vm_pu"),
    "ext_grid": ("p_mw", "q_mvar"),
    "sgen": ("p_mw", "q_mvar"),
}


def element_results(net: Any, data: GridData, family: str, element: tuple[str, int]) -> dict[str, float]:
    """pandapower's own result columns (see `RESULT_COLUMNS`) in the solved ``net`` for the element
    ``(kind, id)`` (the case's numbering) that a constraint of ``family`` is about; for a branch also its
    apparent power at both ends (MVA, the case's from/to ends) and the case's ``rate_a`` (MVA)."""
    kind, idx = _pandapower_element(data, family, element)
    table = net[f"res_{kind}"]
    cols = [c for c in RESULT_COLUMNS.get(kind, ()) if c in table.columns]
    out = {f"res_{kind}.{c}": float(table.at[idx, c]) for c in cols}
    if family_of(family).element == "branch":
        k = list(zip(data.ids.branch_kinds, data.ids.branch.tolist())).index(element)
        flows, base = branch_flows(data, net), data.base_mva
        out["s_from_mva"] = float(np.hypot(flows["p_from"][k], flows["q_from"][k]) * base)
        out["s_to_mva"] = float(np.hypot(flows["p_to"][k], flows["q_to"][k]) * base)
        if np.isfinite(data.branches.rate_a_pu[k]):
            out["rate_a_mva"] = float(data.branches.rate_a_pu[k] * base)
    return out


def _pandapower_element(data: GridData, family: str, element: tuple[str, int]) -> tuple[str, int]:
    """The case's element id (MATPOWER numbering) -> pandapower's element."""
    ids, pp_ids = data.ids, pandapower_ids(data)
    kind, idx = element
    if kind == "bus":
        return "bus", int(pp_ids.bus[np.flatnonzero(ids.bus == idx)[0]])
    if family_of(family).element == "gen":
        k = list(zip(ids.gen_kinds, ids.gen.tolist())).index((kind, idx))
        return pp_ids.gen_kinds[k], int(pp_ids.gen[k])
    k = list(zip(ids.branch_kinds, ids.branch.tolist())).index((kind, idx))
    return pp_ids.branch_kinds[k], int(pp_ids.branch[k])

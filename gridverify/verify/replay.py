"""Replay a load in pandapower: its power flow at the surrogate's set-points, next to gridverify's numbers.

For a load vector (a witness), the surrogate's dispatch gives the generator set-points: active power ``pg``
and voltage magnitude ``vm`` at every ``gen`` (PV bus), voltage magnitude and angle at every ``ext_grid``
(slack); other generator elements are refused by name. They are written, with the loads, into a copy of the
case's pandapower net and ``runpp`` solves the power flow. The slack then balances whatever the surrogate's
dispatch leaves unbalanced, and bus voltages and flows follow the physics instead of the surrogate.

Two sets of constraint values are compared: gridverify's (the constraints evaluated at the surrogate's
output, i.e. what was verified) and the same constraints at pandapower's solved state. For a violated
constraint the replay records both, pandapower's own result columns for the element
(``res_line.loading_percent``, ``res_bus.vm_pu``, ``res_gen.p_mw`` ...) and whether pandapower's state
violates it too (``confirmed``). A surrogate whose dispatch is power-flow feasible gives equal values.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandapower as pp
import torch

from gridverify.grid import GridData, compile_acopf, operating_point, pandapower_ids
from gridverify.ir import Graph
from gridverify.surrogate.case import Case
from gridverify.surrogate.replay import graph_values, surrogate_point, write_loads, write_setpoints
from gridverify.verify.certificate import ConstraintRecord
from gridverify.verify.sources import FileCase

RESULT_COLUMNS = {  # pandapower element kind -> its res_* columns worth showing
    "bus": ("vm_pu", "va_degree", "p_mw", "q_mvar"),
    "line": ("loading_percent", "p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar", "i_ka"),
    "trafo": ("loading_percent", "p_hv_mw", "q_hv_mvar", "p_lv_mw", "q_lv_mvar"),
    "impedance": ("p_from_mw", "q_from_mvar", "p_to_mw", "q_to_mvar"),
    "gen": ("p_mw", "q_mvar", "vm_pu"),
    "ext_grid": ("p_mw", "q_mvar"),
    "sgen": ("p_mw", "q_mvar"),
}


@dataclass(frozen=True)
class PowerFlow:
    """pandapower's answer at one load vector: the solved net and, per family, constraint values (n,) at
    the surrogate's output (``surrogate``) and at pandapower's solved state (``pandapower``, None if the
    power flow did not converge)."""

    net: Any
    converged: bool
    surrogate: Mapping[str, np.ndarray]
    pandapower: Mapping[str, np.ndarray] | None


def _dispatch(case: Case | FileCase, load: np.ndarray) -> dict[str, np.ndarray]:
    """The surrogate's output at ``load`` (2D,): ``pg_pu``, ``qg_pu`` (G,), ``vm_pu``, ``va_rad`` (N,)."""
    with torch.no_grad():
        out = case.surrogate.dispatch(torch.tensor(load, dtype=torch.float64).reshape(1, -1))
    return {k: v.reshape(-1).double().numpy() for k, v in out.items()}


def power_flow(
    case: Case | FileCase, load: np.ndarray, physics: Graph | None = None, base_net: Any | None = None
) -> PowerFlow:
    """Run pandapower's power flow at ``load`` with the surrogate's set-points (module docstring) in a copy
    of ``base_net`` (default: the case's net); ``physics``: `compile_acopf` of the case, when at hand."""
    load = np.asarray(load, dtype=np.float64).reshape(-1)
    physics = physics or compile_acopf(case.problem)
    net = copy.deepcopy(case.net if base_net is None else base_net)
    dispatch = _dispatch(case, load)
    write_loads(case.data, net, load)
    write_setpoints(case.data, net, dispatch)
    at_surrogate = graph_values(physics, surrogate_point(case.data, load, dispatch))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc", max_iteration=30)
    except pp.LoadflowNotConverged:
        return PowerFlow(net, False, at_surrogate, None)
    d = len(case.data.loads.bus)
    solved = replace(operating_point(case.data, net), pd_pu=load[:d], qd_pu=load[d:])
    return PowerFlow(net, True, at_surrogate, graph_values(physics, solved))


def element_results(net: Any, data: GridData, record: ConstraintRecord) -> dict[str, float]:
    """pandapower's own result columns for the record's element (see `RESULT_COLUMNS`)."""
    kind, idx = _pandapower_element(data, record)
    table = net[f"res_{kind}"]
    cols = [c for c in RESULT_COLUMNS.get(kind, ()) if c in table.columns]
    return {f"res_{kind}.{c}": float(table.at[idx, c]) for c in cols}


def _pandapower_element(data: GridData, record: ConstraintRecord) -> tuple[str, int]:
    """The case's element id (MATPOWER numbering) -> pandapower's element."""
    ids, pp_ids = data.ids, pandapower_ids(data)
    kind, idx = record.element
    if kind == "bus":
        return "bus", int(pp_ids.bus[np.flatnonzero(ids.bus == idx)[0]])
    if record.family.startswith(("pg", "qg")):
        k = list(zip(ids.gen_kinds, ids.gen.tolist())).index((kind, idx))
        return pp_ids.gen_kinds[k], int(pp_ids.gen[k])
    k = list(zip(ids.branch_kinds, ids.branch.tolist())).index((kind, idx))
    return pp_ids.branch_kinds[k], int(pp_ids.branch[k])


def replay_records(case: Case | FileCase, records: Sequence[ConstraintRecord]) -> list[ConstraintRecord]:
    """Attach a replay to every violated record (one power flow per distinct witness)."""
    flows: dict[tuple[float, ...], PowerFlow] = {}
    index, physics, base_net = _family_index(case), compile_acopf(case.problem), case.net
    out = []
    for r in records:
        if r.verdict != "violated" or r.witness is None:
            out.append(r)
            continue
        if r.witness not in flows:
            flows[r.witness] = power_flow(case, np.array(r.witness), physics, base_net)
        flow = flows[r.witness]
        out.append(replace(r, replay=_replay_entry(case, flow, r, index[r.name])))
    return out


def _family_index(case: Case | FileCase) -> dict[str, int]:
    """Constraint name -> its position within its family's output."""
    out = {}
    for fam in case.problem.families:
        out.update({c.name: k for k, c in enumerate(case.problem.family(fam))})
    return out


def _replay_entry(case: Case | FileCase, flow: PowerFlow, r: ConstraintRecord, k: int) -> dict[str, Any]:
    ours = float(_violation(flow.surrogate[r.family][k], r.kind))
    entry: dict[str, Any] = {"converged": flow.converged, "gridverify": ours}
    if flow.pandapower is None:
        return {**entry, "pandapower": None, "confirmed": False, "results": {}}
    theirs = float(_violation(flow.pandapower[r.family][k], r.kind))
    return {
        **entry,
        "pandapower": theirs,
        "confirmed": theirs > r.tolerance,
        "difference": theirs - ours,
        "results": element_results(flow.net, case.data, r),
    }


def _violation(value: float, kind: str) -> float:
    return abs(value) if kind == "equality" else value

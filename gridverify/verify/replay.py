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
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandapower as pp
import torch

from gridverify.grid import GridData, OperatingPoint, compile_acopf, operating_point
from gridverify.ir import Graph
from gridverify.surrogate.case import Case
from gridverify.surrogate.replay import write_loads, write_setpoints
from gridverify.verify.certificate import ConstraintRecord

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


def case_net(case: Case) -> Any:
    """The case's pandapower net, made once per replay (pandapower's converter notes are silenced)."""
    log = logging.getLogger("pandapower.converter")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return case.net
    finally:
        log.setLevel(level)


def setpoints_net(case: Case, load: np.ndarray, base_net: Any | None = None) -> Any:
    """A copy of the case's net (or of ``base_net``) with the loads of ``load`` (2D,) and the surrogate's
    set-points (`gridverify.surrogate.replay.write_loads` / `write_setpoints`)."""
    net = copy.deepcopy(case_net(case) if base_net is None else base_net)
    with torch.no_grad():
        dispatch = case.surrogate.dispatch(torch.tensor(load, dtype=torch.float64).reshape(1, -1))
    write_loads(case.data, net, load)
    write_setpoints(case.data, net, {k: v.reshape(-1).double().numpy() for k, v in dispatch.items()})
    return net


def _pandapower_ids(data: GridData) -> Any:
    if data.pandapower is None:
        raise ValueError(f"case {data.name} has no pandapower net to replay in")
    return data.pandapower


def power_flow(
    case: Case, load: np.ndarray, physics: Graph | None = None, base_net: Any | None = None
) -> PowerFlow:
    """Run pandapower's power flow at ``load`` with the surrogate's set-points (module docstring);
    ``physics`` (`compile_acopf` of the case) and ``base_net`` (`case_net`) when the caller has them."""
    load = np.asarray(load, dtype=np.float64).reshape(-1)
    physics = physics or compile_acopf(case.problem)
    net = setpoints_net(case, load, base_net)
    at_surrogate = _constraint_values(case, _surrogate_point(case, load), physics)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            pp.runpp(net, numba=False, calculate_voltage_angles=True, init="dc", max_iteration=30)
    except pp.LoadflowNotConverged:
        return PowerFlow(net, False, at_surrogate, None)
    solved = replace(operating_point(case.data, net), pd_pu=load[: len(case.data.loads.bus)],
                     qd_pu=load[len(case.data.loads.bus):])  # fmt: skip
    return PowerFlow(net, True, at_surrogate, _constraint_values(case, solved, physics))


def _surrogate_point(case: Case, load: np.ndarray) -> OperatingPoint:
    with torch.no_grad():
        out = case.surrogate.dispatch(torch.tensor(load, dtype=torch.float64).reshape(1, -1))
    v = {k: t.reshape(-1).double().numpy() for k, t in out.items()}
    d = len(case.data.loads.bus)
    return OperatingPoint(v["vm_pu"], v["va_rad"], v["pg_pu"], v["qg_pu"], load[:d], load[d:])


def _constraint_values(case: Case, point: OperatingPoint, graph: Graph) -> dict[str, np.ndarray]:
    """Every family's constraint values at ``point`` (``graph``: `compile_acopf` of the case)."""
    values = case.problem.inputs(point)
    feeds = {k: torch.tensor(v, dtype=torch.float64).reshape(1, -1) for k, v in values.items()}
    out = graph.forward(feeds)
    return {k: v.reshape(-1).numpy() for k, v in out.items()}


def element_results(net: Any, data: GridData, record: ConstraintRecord) -> dict[str, float]:
    """pandapower's own result columns for the record's element (see `RESULT_COLUMNS`)."""
    kind, idx = _pandapower_element(data, record)
    table = net[f"res_{kind}"]
    cols = [c for c in RESULT_COLUMNS.get(kind, ()) if c in table.columns]
    return {f"res_{kind}.{c}": float(table.at[idx, c]) for c in cols}


def _pandapower_element(data: GridData, record: ConstraintRecord) -> tuple[str, int]:
    """The case's element id (MATPOWER numbering) -> pandapower's element."""
    ids, pp_ids = data.ids, _pandapower_ids(data)
    kind, idx = record.element
    if kind == "bus":
        return "bus", int(pp_ids.bus[np.flatnonzero(ids.bus == idx)[0]])
    if record.family.startswith(("pg", "qg")):
        k = list(zip(ids.gen_kinds, ids.gen.tolist())).index((kind, idx))
        return pp_ids.gen_kinds[k], int(pp_ids.gen[k])
    k = list(zip(ids.branch_kinds, ids.branch.tolist())).index((kind, idx))
    return pp_ids.branch_kinds[k], int(pp_ids.branch[k])


def replay_records(case: Case, records: Sequence[ConstraintRecord]) -> list[ConstraintRecord]:
    """Attach a replay to every violated record (one power flow per distinct witness)."""
    flows: dict[tuple[float, ...], PowerFlow] = {}
    index, physics, base_net = _family_index(case), compile_acopf(case.problem), case_net(case)
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


def _family_index(case: Case) -> dict[str, int]:
    """Constraint name -> its position within its family's output."""
    out = {}
    for fam in case.problem.families:
        out.update({c.name: k for k, c in enumerate(case.problem.family(fam))})
    return out


def _replay_entry(case: Case, flow: PowerFlow, r: ConstraintRecord, k: int) -> dict[str, Any]:
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

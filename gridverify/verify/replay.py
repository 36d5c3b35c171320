"""Replay a verification's witnesses in pandapower, next to gridverify's numbers.

For a load vector (a witness), the surrogate's dispatch is replayed by `gridverify.grid.replay.power_flow`
(solved to `WITNESS`'s settings): the generator set-points into a copy of the case's pandapower net, and
``runpp`` solves the power flow. The slack then balances whatever the surrogate's dispatch leaves
unbalanced, and bus voltages and flows follow the physics instead of the surrogate.

Two sets of constraint values are compared: gridverify's (the constraints evaluated at the surrogate's
output, i.e. what was verified) and the same constraints at pandapower's solved state. For a violated
constraint the replay records both, pandapower's own result columns for the element
(`gridverify.grid.replay.element_results`) and whether pandapower's state violates it too
(``confirmed``). A surrogate whose dispatch is power-flow feasible gives equal values.

Beside those, `consequences` reads pandapower's solved state as an engineer would: the slack's power
against the surrogate's, generators outside their P or Q limits (units sharing a bus are checked together
for Q, as the power flow's split between them is arbitrary), bus voltages outside their limits, and branch
ends whose apparent power (MVA, from pandapower's flows) exceeds the case's own ``rate_a``; each with the
surrogate's predicted value beside it. A limit is exceeded when by more than `PHYSICAL_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from gridverify.deadline import Deadline
from gridverify.grid import GridData, compile_acopf, operating_point, pandapower_ids
from gridverify.grid.data import branch_flows
from gridverify.grid.families import BALANCE
from gridverify.grid.replay import WITNESS, PowerFlow, element_results
from gridverify.grid.replay import power_flow as replay_dispatch
from gridverify.ir import Graph
from gridverify.specs.certificate import ConstraintRecord
from gridverify.surrogate.case import Case


def _dispatch(case: Case, load: np.ndarray) -> dict[str, np.ndarray]:
    """The surrogate's output at ``load`` (2D,): ``pg_pu``, ``qg_pu`` (G,), ``vm_pu``, ``va_rad`` (N,)."""
    with torch.no_grad():
        out = case.surrogate.dispatch(torch.tensor(load, dtype=torch.float64).reshape(1, -1))
    return {k: v.reshape(-1).double().numpy() for k, v in out.items()}


PHYSICAL_TOLERANCE = 1e-4  # pu for P, Q and vm; relative (0.01 %) for branch loading


def power_flow(
    case: Case, load: np.ndarray, physics: Graph | None = None, base_net: Any | None = None
) -> PowerFlow:
    """pandapower's power flow at ``load`` with the surrogate's set-points (module docstring) in a copy of
    ``base_net`` (default: the case's net); ``physics``: `compile_acopf` of the case, when at hand."""
    load = np.asarray(load, dtype=np.float64).reshape(-1)
    physics = physics or compile_acopf(case.problem)
    net = case.net if base_net is None else base_net
    return replay_dispatch(case.data, net, physics, load, _dispatch(case, load), WITNESS)


def replay_records(
    case: Case, records: Sequence[ConstraintRecord], deadline: Deadline | None = None
) -> list[ConstraintRecord]:
    """Attach a replay to every violated record (one power flow, and one reading of its consequences, per
    distinct witness): each family's worst violation first (physical limits before balance), then the
    others, physical limits first and the worst first. Once ``deadline`` has passed no record is
    replayed any more (the overrun is at most one flow and its reading); those records keep no replay."""
    flows: dict[tuple[float, ...], PowerFlow] = {}
    found: dict[tuple[float, ...], dict[str, Any]] = {}  # a flow's consequences, the same for its records
    index, physics, base_net = _family_index(case), compile_acopf(case.problem), case.net
    out = list(records)
    todo = [k for k, r in enumerate(records) if r.verdict == "violated" and r.witness is not None]
    todo.sort(key=lambda k: (records[k].family in BALANCE, -records[k].worst))
    worst_of: dict[str, int] = {}
    for k in todo:
        worst_of.setdefault(records[k].family, k)
    todo.sort(key=lambda k: worst_of[records[k].family] != k)  # stable: each family's worst first
    for k in todo:
        r = records[k]
        if deadline is not None and deadline.passed():
            break  # reading a flow's results per record costs too (case1354: 889 records, about 10 s)
        if r.witness not in flows:
            flows[r.witness] = power_flow(case, np.array(r.witness), physics, base_net)
            found[r.witness] = consequences(case.data, flows[r.witness])
        entry = _replay_entry(case, flows[r.witness], r, index[r.name], found[r.witness])
        out[k] = replace(r, replay=entry)
    return out


def _family_index(case: Case) -> dict[str, int]:
    """Constraint name -> its position within its family's output."""
    out = {}
    for fam in case.problem.families:
        out.update({c.name: k for k, c in enumerate(case.problem.family(fam))})
    return out


def _replay_entry(
    case: Case, flow: PowerFlow, r: ConstraintRecord, k: int, found: dict[str, Any]
) -> dict[str, Any]:
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
        "results": element_results(flow.net, case.data, r.family, r.element),
        "consequences": found,
    }


def _violation(value: float, kind: str) -> float:
    return abs(value) if kind == "equality" else value


# -- what pandapower's state means physically -----------------------------------------------------------
def consequences(data: GridData, flow: PowerFlow) -> dict[str, Any]:
    """The physical state of a converged replay (see the module docstring), as JSON-ready lists:
    ``slack`` (per slack unit: MW and MVAr, pandapower's and the surrogate's) and ``findings``, one per
    exceeded limit: ``what`` (``overload``, ``voltage``, ``p_limit``, ``q_limit``), ``element``, ``unit``,
    ``pandapower``, ``limit``, ``surrogate``, ``percent`` (of the limit). Empty for a failed power flow."""
    if flow.pandapower is None:
        return {"slack": [], "findings": []}
    state, ours = operating_point(data, flow.net), flow.dispatch
    findings = _overloads(data, branch_flows(data, flow.net), flow.surrogate)
    findings += _voltages(data, state.vm_pu, ours["vm_pu"])
    findings += _generator_limits(data, state.pg_pu, state.qg_pu, ours)
    return {"slack": _slack(data, state.pg_pu, state.qg_pu, ours), "findings": findings}


def _overloads(data: GridData, flows: Mapping[str, np.ndarray], ours: Mapping[str, np.ndarray]) -> list:
    base, rate = data.base_mva, data.branches.rate_a_pu * data.base_mva
    out = []
    for end in ("from", "to"):
        s_mva = np.hypot(flows[f"p_{end}"], flows[f"q_{end}"]) * base
        s_ours = np.hypot(ours[f"p_{end}"], ours[f"q_{end}"]) * base
        for k in np.flatnonzero(np.isfinite(rate) & (s_mva > rate * (1 + PHYSICAL_TOLERANCE))):
            out.append(_finding("overload", f"{_branch_label(data, k)} ({end} end)", "MVA",
                                s_mva[k], rate[k], s_ours[k]))  # fmt: skip
    return out


def _voltages(data: GridData, vm: np.ndarray, vm_ours: np.ndarray) -> list:
    out = []
    for limit, sign in ((data.buses.vmax_pu, 1.0), (data.buses.vmin_pu, -1.0)):
        for i in np.flatnonzero(np.isfinite(limit) & (sign * (vm - limit) > PHYSICAL_TOLERANCE)):
            out.append(_finding("voltage", f"bus {data.ids.bus[i]}", "pu", vm[i], limit[i], vm_ours[i]))
    return out


def _generator_limits(
    data: GridData, pg: np.ndarray, qg: np.ndarray, ours: Mapping[str, np.ndarray]
) -> list[dict[str, Any]]:
    """P per unit; Q per bus (the units at one bus share their Q limits)."""
    base, gens, out = data.base_mva, data.gens, []
    pg_ours, qg_ours = ours["pg_pu"], ours["qg_pu"]
    for g in range(len(pg)):
        for limit, upper in ((gens.pmax_pu[g], True), (gens.pmin_pu[g], False)):
            if _outside(pg[g], limit, upper):
                out.append(_finding("p_limit", _gen_label(data, [g]), "MW", pg[g] * base, limit * base,
                                    pg_ours[g] * base))  # fmt: skip
    for bus in np.unique(gens.bus):
        at = np.flatnonzero(gens.bus == bus)
        q, q_ours = qg[at].sum(), qg_ours[at].sum()
        for limit, upper in ((gens.qmax_pu[at].sum(), True), (gens.qmin_pu[at].sum(), False)):
            if _outside(q, limit, upper):
                out.append(_finding("q_limit", _gen_label(data, at), "MVAr", q * base, limit * base,
                                    q_ours * base))  # fmt: skip
    return out


def _outside(value: float, limit: float, upper: bool) -> bool:
    excess = value - limit if upper else limit - value
    return bool(np.isfinite(limit) and excess > PHYSICAL_TOLERANCE)


def _slack(data: GridData, pg: np.ndarray, qg: np.ndarray, ours: Mapping[str, np.ndarray]) -> list:
    """Per slack unit (pandapower ``ext_grid``): its MW and MVAr after the power flow and the surrogate's."""
    kinds, base = pandapower_ids(data).gen_kinds, data.base_mva
    pg_ours, qg_ours = ours["pg_pu"], ours["qg_pu"]
    slack = [g for g, kind in enumerate(kinds) if kind == "ext_grid"]
    return [
        {"element": _gen_label(data, [g]),
         "p_mw": _json(pg[g] * base), "p_mw_surrogate": _json(pg_ours[g] * base),
         "q_mvar": _json(qg[g] * base), "q_mvar_surrogate": _json(qg_ours[g] * base)}
        for g in slack
    ]  # fmt: skip


def _finding(what: str, element: str, unit: str, value: float, limit: float, ours: float) -> dict[str, Any]:
    """One exceeded limit; ``percent``: loading in % of the rating (overloads only)."""
    percent = 100.0 * value / limit if what == "overload" and limit > 0 else None
    return {"what": what, "element": element, "unit": unit, "pandapower": _json(value),
            "limit": _json(limit), "surrogate": _json(ours), "percent": _json(percent)}  # fmt: skip


def _branch_label(data: GridData, k: int) -> str:
    kind, idx = data.ids.branch_kinds[k], int(data.ids.branch[k])
    f, t = data.ids.bus[data.branches.from_bus[k]], data.ids.bus[data.branches.to_bus[k]]
    return f"{kind} {idx}: {f}-{t}"


def _gen_label(data: GridData, units: Sequence[int] | np.ndarray) -> str:
    names = ", ".join(f"{data.ids.gen_kinds[g]} {int(data.ids.gen[g])}" for g in units)
    return f"{names} at bus {data.ids.bus[data.gens.bus[units[0]]]}"


def _json(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)

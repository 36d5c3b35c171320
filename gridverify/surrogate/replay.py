"""How far a surrogate's dispatch is from pandapower's power flow at the same set-points (training data
checks): the dispatch is replayed by `gridverify.grid.replay.power_flow` (solved to `MODEL_CHECK`'s
tolerance) and the compiled constraint graph's values at the surrogate's point are compared with
pandapower's solved state.

Where the surrogate's dispatch is power-flow feasible (zero balance residual) the replayed state is the
surrogate's, and the graph's branch flows equal pandapower's; where it is not, `Replay` reports by how much
they differ. ``model_error_pu`` checks the graph itself: its flows at the replayed state against
pandapower's (a few 1e-9 pu when the models agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gridverify.grid.data import GridData, branch_flows, pandapower_ids
from gridverify.grid.replay import MODEL_CHECK, power_flow
from gridverify.ir.graph import Graph

__all__ = ["Replay", "replay"]

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
    flow = power_flow(data, net, graph, load, dispatch, MODEL_CHECK)
    if flow.state is None or flow.pandapower is None:
        nan = float("nan")
        return Replay(False, nan, nan, _balance(flow.surrogate), nan, nan, nan, nan)
    solved, surrogate, flows = flow.state, flow.surrogate, branch_flows(data, flow.net)
    slack = np.array([k == "ext_grid" for k in pandapower_ids(data).gen_kinds])
    return Replay(
        converged=True,
        flow_error_pu=max(float(np.abs(surrogate[k] - flows[k]).max()) for k in FLOWS),
        model_error_pu=max(float(np.abs(flow.pandapower[k] - flows[k]).max()) for k in FLOWS),
        balance_residual_pu=_balance(surrogate),
        vm_error_pu=float(np.abs(solved.vm_pu - dispatch["vm_pu"]).max()),
        va_error_rad=float(np.abs(solved.va_rad - dispatch["va_rad"]).max()),
        qg_error_pu=float(np.abs(solved.qg_pu - dispatch["qg_pu"]).max()),
        slack_pg_error_pu=float(np.abs(solved.pg_pu - dispatch["pg_pu"])[slack].max(initial=0.0)),
    )


def _balance(values: Mapping[str, np.ndarray]) -> float:
    return float(max(np.abs(values["p_balance"]).max(), np.abs(values["q_balance"]).max()))

"""Cases shared by the grid tests, built once per session: pandapower's networks solved by its own power
flow, PGLib files solved by pandapower and by PYPOWER's AC-OPF, and their compiled constraint graphs.

Power flows run with ``init="dc"``: pandapower's flat start diverges on case300.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import torch
from matpowercaseframes import CaseFrames
from pypower.api import ppoption, runopf
from pypower.idx_bus import BUS_I, VA, VM
from pypower.idx_gen import PG, QG

from gridverify.grid.acopf import AcopfProblem, build_acopf, compile_acopf
from gridverify.grid.data import GridData, OperatingPoint, from_matpower, from_pandapower, matpower_net
from gridverify.ir.graph import Graph


def run_power_flow(net: Any) -> None:
    pp.runpp(net, calculate_voltage_angles=True, init="dc", numba=False, tolerance_mva=1e-10)


@cache
def pandapower_case(name: str) -> tuple[GridData, Any]:
    """GridData of ``pandapower.networks.<name>()`` and the net after ``runpp``."""
    net = getattr(pn, name)()
    data = from_pandapower(net)
    run_power_flow(net)
    return data, net


@cache
def pglib_case(path: Path) -> tuple[GridData, Any]:
    """GridData of a PGLib file and pandapower's net of the same file after ``runpp``."""
    data, net = from_matpower(path), matpower_net(path)
    run_power_flow(net)
    return data, net


@cache
def compiled(data: GridData) -> tuple[AcopfProblem, Graph]:
    problem = build_acopf(data)
    return problem, compile_acopf(problem)


def evaluate(graph: Graph, problem: AcopfProblem, point: OperatingPoint) -> dict[str, np.ndarray]:
    """Every graph output at one operating point, as 1-D arrays."""
    feeds = {k: torch.as_tensor(v)[None] for k, v in problem.inputs(point).items()}
    return {k: v[0].numpy() for k, v in graph.forward(feeds).items()}


@cache
def reference_opf(path: Path) -> tuple[GridData, OperatingPoint, dict[str, Any]]:
    """PYPOWER's AC-OPF of a PGLib file (read by matpowercaseframes, independent of pandapower) and its
    solution in the order of ``from_matpower(path)``."""
    mpc = CaseFrames(str(path)).to_mpc()
    ppc = {
        k: np.array(v, dtype=float) if k in ("bus", "gen", "branch", "gencost") else v for k, v in mpc.items()
    }
    result = runopf(ppc, ppoption(VERBOSE=0, OUT_ALL=0))
    assert result["success"], f"PYPOWER runopf failed on {path.name}"
    data = from_matpower(path)
    rows = {int(b): i for i, b in enumerate(result["bus"][:, BUS_I])}
    bus = [rows[int(b)] for b in data.ids.bus]
    gen, base = data.ids.gen - 1, result["baseMVA"]
    point = OperatingPoint(
        vm_pu=result["bus"][bus, VM],
        va_rad=np.deg2rad(result["bus"][bus, VA]),
        pg_pu=result["gen"][gen, PG] / base,
        qg_pu=result["gen"][gen, QG] / base,
        pd_pu=data.loads.p_pu,
        qd_pu=data.loads.q_pu,
    )
    return data, point, result

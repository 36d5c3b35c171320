"""The polar AC-OPF of a `GridData`, solved by IPOPT with exact first and second derivatives (CasADi).

The problem is the one `gridverify.grid.acopf` writes and PGLib / MATPOWER / PowerModels solve: minimise
``sum_g c2 pg^2 + c1 pg + c0`` (per hour, pg in pu) over bus voltages ``vm_pu``, ``va_rad`` (N,) and
generator outputs ``pg_pu``, ``qg_pu`` (G,), subject to

- bus power balance (P and Q) with the pi-model branch flows of `FlowCoefficients`,
- thermal limits ``p^2 + q^2 <= rate_a^2`` at both ends of every rated branch,
- angle-difference limits ``angmin <= va_f - va_t <= angmax`` where given,
- voltage and generator bounds, the reference angles fixed.

The loads ``pd_pu``, ``qd_pu`` (D,) are parameters: the NLP, its derivatives and the IPOPT instance are built
once per case (`AcOpf`), then solved for any number of loads. `AcOpf.solve` starts from a given earlier
`OpfSolution` (primal point and multipliers: IPOPT's warm start) or, without one, from a flat start
(angles at the reference, voltages and outputs mid-range); a warm start that fails is retried cold.
`Labeller` keeps the solutions it found and warm-starts each new load from the nearest solved one.

A solve counts as converged only when IPOPT reports ``Solve_Succeeded`` and the returned point meets every
constraint within ``OpfConfig.feasibility_tol_pu`` (balance residuals in pu, bounds in their units).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import casadi as ca
import numpy as np

from gridverify.grid.acopf import FlowCoefficients
from gridverify.grid.data import GridData

__all__ = ["AcOpf", "Labeller", "OpfConfig", "OpfSolution"]


@dataclass(frozen=True)
class OpfConfig:
    """IPOPT's settings. ``tol``: its scaled KKT tolerance; ``max_iter`` / ``warm_max_iter``: iteration
    limits of a flat and a warm start (solvable PGLib loads take 15-50 flat, 10-65 warm, rarely 120 (then the
    flat retry solves them): loads without a solution end at these limits, so they bound what a failure
    costs); ``feasibility_tol_pu``: the largest constraint violation of an accepted solution; ``warm_push``:
    how close to their bounds a warm start may keep variables and multipliers (IPOPT's
    ``warm_start_*_push``); ``warm_mu``: the barrier parameter a warm start begins with."""

    tol: float = 1e-8
    max_iter: int = 150
    warm_max_iter: int = 100
    feasibility_tol_pu: float = 1e-6
    warm_push: float = 1e-6
    warm_mu: float = 1e-4


@dataclass(frozen=True, eq=False)
class OpfSolution:
    """One solve at loads ``load`` = concat(pd_pu, qd_pu) (2D,). ``x``, ``lam_x``, ``lam_g``: IPOPT's primal
    point and multipliers (for warm starts); ``converged`` False: the other numbers are IPOPT's last
    iterate, not an optimum; ``seconds``: IPOPT's wall time, a failed warm start's included; ``warm``:
    whether the returned point came from a warm start."""

    load: np.ndarray
    converged: bool
    status: str
    cost: float
    pg_pu: np.ndarray
    qg_pu: np.ndarray
    vm_pu: np.ndarray
    va_rad: np.ndarray
    iterations: int
    seconds: float
    warm: bool
    violation: float
    x: np.ndarray = field(repr=False)
    lam_x: np.ndarray = field(repr=False)
    lam_g: np.ndarray = field(repr=False)

    def label(self) -> np.ndarray:
        """``concat(pg, qg, vm, va, [cost])``: the training label (`gridverify.surrogate.dataset`)."""
        return np.concatenate([self.pg_pu, self.qg_pu, self.vm_pu, self.va_rad, [self.cost]])


def _incidence(rows: np.ndarray, n: int) -> ca.DM:
    """(n, len(rows)) sparse 0/1 matrix with a one at (rows[k], k)."""
    cols = list(range(len(rows)))
    return ca.DM.triplet([int(r) for r in rows], cols, ca.DM.ones(len(rows)), n, len(rows))


class AcOpf:
    """The compiled NLP of one case (see the module docstring); `solve` runs IPOPT for one load vector.

    Variables ``x = concat(va (N,), vm (N,), pg (G,), qg (G,))``; constraints ``g = concat(p_balance (N,),
    q_balance (N,), thermal_from (R,), thermal_to (R,), angle difference (A,))`` with R the rated branches
    and A those with an angle limit."""

    def __init__(self, data: GridData, config: OpfConfig = OpfConfig()) -> None:
        self.data, self.config = data, config
        n, g, d = len(data.buses.vmin_pu), len(data.gens.bus), len(data.loads.bus)
        self.sizes = (n, g, d)
        x, p = ca.SX.sym("x", 2 * n + 2 * g), ca.SX.sym("load", 2 * d)
        constraints, self.lbg, self.ubg = self._constraints(x, p)
        gens = data.gens
        pg = x[2 * n : 2 * n + g]
        cost = ca.dot(ca.DM(gens.cost_c2_per_pu2), pg**2) + ca.dot(ca.DM(gens.cost_c1_per_pu), pg)
        cost = cost + float(np.sum(gens.cost_c0))
        nlp = {"x": x, "p": p, "f": cost, "g": constraints}
        self.lbx, self.ubx = self._bounds()
        self._cold = ca.nlpsol("opf_cold", "ipopt", nlp, self._options(warm=False))
        self._warm = ca.nlpsol("opf_warm", "ipopt", nlp, self._options(warm=True))
        self._residual = ca.Function("residual", [x, p], [constraints])

    # -- building -------------------------------------------------------------------------------------
    def _constraints(self, x: ca.SX, p: ca.SX) -> tuple[ca.SX, np.ndarray, np.ndarray]:
        data, (n, g, d) = self.data, self.sizes
        br, bus = data.branches, data.buses
        va, vm = x[:n], x[n : 2 * n]
        pg, qg = x[2 * n : 2 * n + g], x[2 * n + g :]
        f, t = [int(i) for i in br.from_bus], [int(i) for i in br.to_bus]
        c = FlowCoefficients.of(data)
        vf2, vt2 = vm[f] ** 2, vm[t] ** 2
        vv, dva = vm[f] * vm[t], va[f] - va[t]
        wr, wi = vv * ca.cos(dva), vv * ca.sin(dva)

        def flow(v2: ca.SX, cv: np.ndarray, cr: np.ndarray, ci: np.ndarray) -> ca.SX:
            return ca.DM(cv) * v2 + ca.DM(cr) * wr + ca.DM(ci) * wi

        p_f, q_f = flow(vf2, c.pf_v, c.pf_r, c.pf_i), flow(vf2, c.qf_v, c.qf_r, c.qf_i)
        p_t, q_t = flow(vt2, c.pt_v, c.pt_r, c.pt_i), flow(vt2, c.qt_v, c.qt_r, c.qt_i)
        cf, ct = _incidence(br.from_bus, n), _incidence(br.to_bus, n)
        cg, cd = _incidence(data.gens.bus, n), _incidence(data.loads.bus, n)
        vm2 = vm**2
        p_bal = ca.mtimes(cg, pg) - ca.mtimes(cd, p[:d]) - ca.DM(bus.gs_pu) * vm2
        p_bal = p_bal - ca.mtimes(cf, p_f) - ca.mtimes(ct, p_t)
        q_bal = ca.mtimes(cg, qg) - ca.mtimes(cd, p[d:]) + ca.DM(bus.bs_pu) * vm2
        q_bal = q_bal - ca.mtimes(cf, q_f) - ca.mtimes(ct, q_t)
        rated = [int(k) for k in np.flatnonzero(np.isfinite(br.rate_a_pu))]
        limited = np.isfinite(br.angmin_rad) | np.isfinite(br.angmax_rad)
        angled = [int(k) for k in np.flatnonzero(limited)]
        parts = [p_bal, q_bal, p_f[rated] ** 2 + q_f[rated] ** 2, p_t[rated] ** 2 + q_t[rated] ** 2]
        parts.append(dva[angled])
        rate2 = br.rate_a_pu[rated] ** 2
        lower = np.concatenate([np.zeros(2 * n), np.full(2 * len(rated), -np.inf), br.angmin_rad[angled]])
        upper = np.concatenate([np.zeros(2 * n), rate2, rate2, br.angmax_rad[angled]])
        return ca.vertcat(*parts), lower, upper

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        data, (n, _, _) = self.data, self.sizes
        va_lo, va_hi = np.full(n, -np.inf), np.full(n, np.inf)
        va_lo[data.buses.ref] = va_hi[data.buses.ref] = data.buses.ref_va_rad
        g, b = data.gens, data.buses
        lower = np.concatenate([va_lo, b.vmin_pu, g.pmin_pu, g.qmin_pu])
        upper = np.concatenate([va_hi, b.vmax_pu, g.pmax_pu, g.qmax_pu])
        return lower, upper

    def _options(self, warm: bool) -> dict[str, object]:
        cfg = self.config
        ipopt: dict[str, object] = {"print_level": 0, "sb": "yes", "tol": cfg.tol,
                                    "max_iter": cfg.warm_max_iter if warm else cfg.max_iter,
                                    "constr_viol_tol": cfg.feasibility_tol_pu / 10}  # fmt: skip
        if warm:
            ipopt |= {
                "warm_start_init_point": "yes",
                "warm_start_bound_push": cfg.warm_push,
                "warm_start_mult_bound_push": cfg.warm_push,
                "warm_start_slack_bound_push": cfg.warm_push,
                "mu_init": cfg.warm_mu,
            }
        return {"ipopt": ipopt, "print_time": False, "error_on_fail": False}

    # -- solving ----------------------------------------------------------------------------------------
    def flat_start(self) -> np.ndarray:
        """Angles at the reference angle, voltages and generator outputs mid-range (finite limits)."""
        lo, hi = self.lbx, self.ubx
        finite = np.isfinite(lo) & np.isfinite(hi)
        mid = np.clip(0.0, lo, hi)
        mid[finite] = (lo[finite] + hi[finite]) / 2
        n = self.sizes[0]
        ref = self.data.buses.ref_va_rad
        mid[:n] = float(ref[0]) if ref.size else 0.0
        mid[n : 2 * n] = np.clip(1.0, lo[n : 2 * n], hi[n : 2 * n])
        return mid

    def solve(self, load: np.ndarray, start: OpfSolution | None = None) -> OpfSolution:
        """IPOPT at ``load`` (2D,) pu, warm from ``start`` when given (retried cold if that fails)."""
        load = np.asarray(load, dtype=np.float64)
        if start is None:
            return self._run(self._cold, load, self.flat_start(), None, None)
        warm = self._run(self._warm, load, start.x, start.lam_x, start.lam_g)
        if warm.converged:
            return warm
        cold = self._run(self._cold, load, self.flat_start(), None, None)
        return dataclasses.replace(cold, seconds=warm.seconds + cold.seconds)

    def _run(self, solver: ca.Function, load: np.ndarray, x0: np.ndarray, lam_x: np.ndarray | None,
             lam_g: np.ndarray | None) -> OpfSolution:  # fmt: skip
        args = {"x0": x0, "p": load, "lbx": self.lbx, "ubx": self.ubx, "lbg": self.lbg, "ubg": self.ubg}
        if lam_x is not None and lam_g is not None:
            args |= {"lam_x0": lam_x, "lam_g0": lam_g}
        start = time.monotonic()
        out = solver(**args)
        seconds = time.monotonic() - start
        stats = solver.stats()
        x = np.asarray(out["x"]).reshape(-1)
        violation = self.violation(x, load)
        status = str(stats.get("return_status", "unknown"))
        converged = status == "Solve_Succeeded" and violation <= self.config.feasibility_tol_pu
        n, g, _ = self.sizes
        return OpfSolution(
            load=load, converged=converged, status=status, cost=float(out["f"]),
            pg_pu=x[2 * n : 2 * n + g], qg_pu=x[2 * n + g :], vm_pu=x[n : 2 * n], va_rad=x[:n],
            iterations=int(stats.get("iter_count", -1)), seconds=seconds, warm=lam_x is not None,
            violation=violation, x=x, lam_x=np.asarray(out["lam_x"]).reshape(-1),
            lam_g=np.asarray(out["lam_g"]).reshape(-1),
        )  # fmt: skip

    def violation(self, x: np.ndarray, load: np.ndarray) -> float:
        """The largest violation of any constraint or bound at ``x`` (pu, pu^2 for thermal limits, rad)."""
        g = np.asarray(self._residual(x, load)).reshape(-1)
        over = np.concatenate([self.lbg - g, g - self.ubg, self.lbx - x, x - self.ubx])
        over = over[np.isfinite(over)]
        return float(max(0.0, over.max())) if over.size else 0.0


class Labeller:
    """Solves loads one after another, each warm-started from the nearest load (Euclidean, pu) solved so
    far; counts what it tried, what failed and how many warm starts had to be retried cold."""

    def __init__(self, opf: AcOpf) -> None:
        self.opf = opf
        self._loads: list[np.ndarray] = []
        self._solutions: list[OpfSolution] = []
        self.tried = self.failed = 0

    def nearest(self, load: np.ndarray) -> OpfSolution | None:
        if not self._loads:
            return None
        distance = np.linalg.norm(np.asarray(self._loads) - load, axis=1)
        return self._solutions[int(np.argmin(distance))]

    def solve(self, load: np.ndarray) -> OpfSolution:
        solution = self.opf.solve(load, self.nearest(load))
        self.tried += 1
        if solution.converged:
            self._loads.append(np.asarray(load, dtype=np.float64))
            self._solutions.append(solution)
        else:
            self.failed += 1
        return solution

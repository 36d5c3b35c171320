"""The ACOPF constraint set, written once in sympy, after MATPOWER / PGLib / PowerModels.

Three axes kept apart, as in PowerModels:

- *problem* (`build_acopf`): which constraints exist and how they combine bus and branch quantities;
- *formulation* (`Formulation`, here `PolarFormulation`): how voltages are written: the voltage variables,
  ``|V_i|^2``, the cross terms ``W_ft = V_f conj(V_t)``, voltage, angle-difference and reference limits;
- *data* (`GridData`): the numbers, folded into coefficients (`FlowCoefficients`), never into variables.

Branch flows (per unit; pi model of `gridverify.grid.data`: y = g + jb = 1/(r + jx), total shunt g_c + j b_c,
tap tau, shift phi, tr = tau cos phi, ti = tau sin phi) are linear in ``|V_f|^2``, ``|V_t|^2`` and
``W = V_f conj(V_t) = Wr + j Wi`` (polar: ``Wr = vm_f vm_t cos(va_f - va_t)``, ``Wi = vm_f vm_t sin(...)``):

    p_f =  (g + g_c/2)/tau^2 |V_f|^2 + ((-g tr + b ti) Wr + (-b tr - g ti) Wi) / tau^2
    q_f = -(b + b_c/2)/tau^2 |V_f|^2 + (( b tr + g ti) Wr + (-g tr + b ti) Wi) / tau^2
    p_t =  (g + g_c/2)       |V_t|^2 + ((-g tr - b ti) Wr + ( b tr - g ti) Wi) / tau^2
    q_t = -(b + b_c/2)       |V_t|^2 + (( b tr - g ti) Wr + ( g tr + b ti) Wi) / tau^2

Constraints, each ``h(x) = 0`` (`Kind.EQUALITY`) or ``g(x) <= 0`` (`Kind.INEQUALITY`), per unit:

- ``p_balance[bus i]``: ``sum pg - sum pd - gs_i |V_i|^2 - sum_(ends at i) p = 0``;
- ``q_balance[bus i]``: ``sum qg - sum qd + bs_i |V_i|^2 - sum_(ends at i) q = 0``;
- ``ref_angle[bus i]``: the reference angle equals the case's value;
- ``thermal_from`` / ``thermal_to[branch k: f-t]``: ``p^2 + q^2 - rate_a^2 <= 0`` at each end;
- ``angle_min`` / ``angle_max``: ``angmin <= va_f - va_t <= angmax``;
- ``vm_min`` / ``vm_max``, ``pg_min`` / ``pg_max``, ``qg_min`` / ``qg_max``: bounds.

Infinite limits are left out.

Variables (graph inputs): the formulation's voltages (polar: ``vm_pu``, ``va_rad``, each (N,)) and ``pg_pu``,
``qg_pu`` (G,), ``pd_pu``, ``qd_pu`` (D,). Quantities besides constraints: ``p_from``, ``q_from``, ``p_to``,
``q_to`` (L,) and ``cost`` (1,), per hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import sympy

from gridverify.grid.data import GridData, OperatingPoint
from gridverify.grid.families import FAMILIES, Kind
from gridverify.grid.families import family as family_of
from gridverify.ir.from_sympy import from_sympy
from gridverify.ir.graph import Graph

__all__ = [
    "QUANTITIES",
    "AcopfProblem",
    "Constraint",
    "FlowCoefficients",
    "Formulation",
    "Kind",
    "PolarFormulation",
    "build_acopf",
    "compile_acopf",
    "linear_sum",
]

Expr = sympy.Expr
Symbols = tuple[sympy.Symbol, ...]


QUANTITIES = ("p_from", "q_from", "p_to", "q_to", "cost")  # graph outputs besides the families


@dataclass(frozen=True)
class Constraint:
    """One constraint: ``name`` a person reads (``thermal_from[line 3: 4-7]``), its family and kind, the
    element of the case it belongs to (``("line", 3)``) and the expression (residual, or g in g <= 0)."""

    name: str
    family: str
    kind: Kind
    element: tuple[str, int]
    expr: Expr


class Formulation(Protocol):
    """How voltages are written. Limits are returned as ``g(x) <= 0`` pairs (lower, upper)."""

    @property
    def variables(self) -> Mapping[str, Symbols]: ...

    def vm_squared(self, bus: int) -> Expr: ...

    def cross(self, f: int, t: int) -> tuple[Expr, Expr]: ...

    def voltage_limits(self, bus: int, vmin: float, vmax: float) -> tuple[Expr, Expr]: ...

    def angle_limits(self, f: int, t: int, angmin: float, angmax: float) -> tuple[Expr, Expr]: ...

    def reference_angle(self, bus: int, va_rad: float) -> Expr: ...

    def voltage_inputs(self, point: OperatingPoint) -> dict[str, np.ndarray]: ...


def _symbols(prefix: str, n: int) -> Symbols:
    return tuple(sympy.Symbol(f"{prefix}_{i}", real=True) for i in range(n))


Terms = list[tuple[float, Expr]]  # sum of coef * monomial


def linear_sum(terms: Sequence[tuple[float, Expr]], constant: float = 0.0) -> Expr:
    """``constant + sum c * m`` over nonzero ``c``, built unevaluated (``evaluate=False``): sympy's
    canonicalisation costs ~7x the build time, and `from_sympy` folds constants and like terms itself."""
    parts: list[Expr] = [m if c == 1.0 else sympy.Mul(_number(c), m, evaluate=False) for c, m in terms if c]
    parts += [sympy.Float(constant)] if constant else []
    if not parts:
        return sympy.Float(0.0)
    return parts[0] if len(parts) == 1 else sympy.Add(*parts, evaluate=False)


def _number(c: float) -> Expr:
    return sympy.S.NegativeOne if c == -1.0 else sympy.Float(c)


@dataclass(frozen=True)
class PolarFormulation:
    """Polar voltages ``V_i = vm_i exp(j va_i)``: inputs ``vm_pu`` and ``va_rad``, each (N,).
    ``|V_i|^2 = vm_i^2``, ``W_ft = vm_f vm_t (cos(va_f - va_t) + j sin(va_f - va_t))``."""

    vm: Symbols
    va: Symbols

    @classmethod
    def for_buses(cls, n_bus: int) -> PolarFormulation:
        return cls(_symbols("vm", n_bus), _symbols("va", n_bus))

    @property
    def variables(self) -> Mapping[str, Symbols]:
        return {"vm_pu": self.vm, "va_rad": self.va}

    def vm_squared(self, bus: int) -> Expr:
        return sympy.Pow(self.vm[bus], 2, evaluate=False)

    def cross(self, f: int, t: int) -> tuple[Expr, Expr]:
        vv = sympy.Mul(self.vm[f], self.vm[t], evaluate=False)
        angle = linear_sum([(1.0, self.va[f]), (-1.0, self.va[t])])
        cos, sin = sympy.cos(angle, evaluate=False), sympy.sin(angle, evaluate=False)
        return sympy.Mul(vv, cos, evaluate=False), sympy.Mul(vv, sin, evaluate=False)

    def voltage_limits(self, bus: int, vmin: float, vmax: float) -> tuple[Expr, Expr]:
        return linear_sum([(-1.0, self.vm[bus])], vmin), linear_sum([(1.0, self.vm[bus])], -vmax)

    def angle_limits(self, f: int, t: int, angmin: float, angmax: float) -> tuple[Expr, Expr]:
        diff = [(1.0, self.va[f]), (-1.0, self.va[t])]
        return linear_sum([(-c, v) for c, v in diff], angmin), linear_sum(diff, -angmax)

    def reference_angle(self, bus: int, va_rad: float) -> Expr:
        return linear_sum([(1.0, self.va[bus])], -va_rad)

    def voltage_inputs(self, point: OperatingPoint) -> dict[str, np.ndarray]:
        return {"vm_pu": point.vm_pu, "va_rad": point.va_rad}


@dataclass(frozen=True)
class FlowCoefficients:
    """The data side of the flow equations (module docstring), each (L,): ``p_f = pf_v |V_f|^2 + pf_r Wr +
    pf_i Wi`` and likewise for q_f, p_t, q_t (``*_v`` multiplies ``|V_t|^2`` for the to end)."""

    pf_v: np.ndarray
    pf_r: np.ndarray
    pf_i: np.ndarray
    qf_v: np.ndarray
    qf_r: np.ndarray
    qf_i: np.ndarray
    pt_v: np.ndarray
    pt_r: np.ndarray
    pt_i: np.ndarray
    qt_v: np.ndarray
    qt_r: np.ndarray
    qt_i: np.ndarray

    @classmethod
    def of(cls, data: GridData) -> FlowCoefficients:
        br = data.branches
        y = 1.0 / (br.r_pu + 1j * br.x_pu)
        g, b, tau2 = y.real, y.imag, br.tap**2
        tr, ti = br.tap * np.cos(br.shift_rad), br.tap * np.sin(br.shift_rad)
        gs, bs = g + br.g_pu / 2, b + br.b_pu / 2
        return cls(
            gs / tau2, (-g * tr + b * ti) / tau2, (-b * tr - g * ti) / tau2,
            -bs / tau2, (b * tr + g * ti) / tau2, (-g * tr + b * ti) / tau2,
            gs, (-g * tr - b * ti) / tau2, (b * tr - g * ti) / tau2,
            -bs, (b * tr - g * ti) / tau2, (g * tr + b * ti) / tau2,
        )  # fmt: skip


@dataclass(frozen=True)
class AcopfProblem:
    """The constraint set of one case in one formulation (see the module docstring)."""

    data: GridData
    formulation: Formulation
    dispatch: Mapping[str, Symbols]
    constraints: tuple[Constraint, ...]
    quantities: Mapping[str, tuple[Expr, ...]]

    @property
    def variables(self) -> dict[str, Symbols]:
        """Graph inputs: name -> the symbols of its entries."""
        return {**self.formulation.variables, **self.dispatch}

    @property
    def families(self) -> tuple[str, ...]:
        """Families with at least one constraint, in `FAMILIES` order."""
        present = {c.family for c in self.constraints}
        return tuple(f.name for f in FAMILIES if f.name in present)

    def family(self, name: str) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.family == name)

    def inputs(self, point: OperatingPoint) -> dict[str, np.ndarray]:
        """Values of the graph inputs at ``point``, each (n,): fresh writable arrays (torch-ready)."""
        dispatch = {"pg_pu": point.pg_pu, "qg_pu": point.qg_pu, "pd_pu": point.pd_pu, "qd_pu": point.qd_pu}
        return {k: np.array(v) for k, v in {**self.formulation.voltage_inputs(point), **dispatch}.items()}


def build_acopf(data: GridData, formulation: Formulation | None = None) -> AcopfProblem:
    """The ACOPF constraint set of ``data`` (polar voltages unless another formulation is given)."""
    form = formulation or PolarFormulation.for_buses(len(data.ids.bus))
    n_gen, n_load = len(data.gens.bus), len(data.loads.bus)
    dispatch = {
        "pg_pu": _symbols("pg", n_gen),
        "qg_pu": _symbols("qg", n_gen),
        "pd_pu": _symbols("pd", n_load),
        "qd_pu": _symbols("qd", n_load),
    }
    flows = _branch_flows(data, form)
    constraints = (
        *_balance(data, form, dispatch, flows),
        *_reference(data, form),
        *_branch_limits(data, form, flows),
        *_bus_limits(data, form),
        *_generator_limits(data, dispatch),
    )
    quantities = {**flows, "cost": (_cost(data, dispatch["pg_pu"]),)}
    return AcopfProblem(data, form, dispatch, _sorted(constraints), quantities)


def compile_acopf(problem: AcopfProblem) -> Graph:
    """One graph: inputs `AcopfProblem.variables`; outputs every non-empty family (its constraints in
    order) and every quantity. Quantities first, so rows meet in branch order and the cos and sin
    products gather ``vm_f``, ``vm_t`` alike (shared nodes)."""
    outputs = {name: problem.quantities[name] for name in QUANTITIES}
    for family in problem.families:
        outputs[family] = tuple(c.expr for c in problem.family(family))
    return from_sympy(outputs, problem.variables)


def _sorted(constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    order = {f.name: i for i, f in enumerate(FAMILIES)}
    return tuple(sorted(constraints, key=lambda c: order[c.family]))  # stable: element order kept


# -- labels -------------------------------------------------------------------------------------------
Label = tuple[str, tuple[str, int]]


def _bus(data: GridData, i: int) -> Label:
    return f"bus {data.ids.bus[i]}", ("bus", int(data.ids.bus[i]))


def _branch(data: GridData, k: int) -> Label:
    kind, idx = data.ids.branch_kinds[k], int(data.ids.branch[k])
    f, t = data.ids.bus[data.branches.from_bus[k]], data.ids.bus[data.branches.to_bus[k]]
    return f"{kind} {idx}: {f}-{t}", (kind, idx)


def _gen(data: GridData, g: int) -> Label:
    kind, idx = data.ids.gen_kinds[g], int(data.ids.gen[g])
    return f"{kind} {idx}", (kind, idx)


def _make(name: str, label: Label, expr: Expr) -> Constraint:
    return Constraint(f"{name}[{label[0]}]", name, family_of(name).kind, label[1], expr)


# -- constraint families ------------------------------------------------------------------------------
def _branch_flows(data: GridData, form: Formulation) -> dict[str, tuple[Expr, ...]]:
    """p_from, q_from, p_to, q_to of every branch: sums over ``|V_f|^2, |V_t|^2, Wr, Wi``."""
    c = FlowCoefficients.of(data)
    out: dict[str, list[Expr]] = {"p_from": [], "q_from": [], "p_to": [], "q_to": []}
    for k, (f, t) in enumerate(zip(data.branches.from_bus.tolist(), data.branches.to_bus.tolist())):
        wf, wt = form.vm_squared(f), form.vm_squared(t)
        wr, wi = form.cross(f, t)
        for name, w, v, r, i in (
            ("p_from", wf, c.pf_v, c.pf_r, c.pf_i),
            ("q_from", wf, c.qf_v, c.qf_r, c.qf_i),
            ("p_to", wt, c.pt_v, c.pt_r, c.pt_i),
            ("q_to", wt, c.qt_v, c.qt_r, c.qt_i),
        ):
            out[name].append(linear_sum([(float(v[k]), w), (float(r[k]), wr), (float(i[k]), wi)]))
    return {name: tuple(exprs) for name, exprs in out.items()}


def _balance(
    data: GridData, form: Formulation, dispatch: Mapping[str, Symbols], flows: Mapping[str, tuple[Expr, ...]]
) -> list[Constraint]:
    """Generation - demand - shunt - flows out of the bus (the flow expressions themselves, so each
    branch's terms are built once)."""
    n = len(data.ids.bus)
    p: list[Terms] = [[(-float(data.buses.gs_pu[i]), form.vm_squared(i))] for i in range(n)]
    q: list[Terms] = [[(float(data.buses.bs_pu[i]), form.vm_squared(i))] for i in range(n)]
    for g, i in enumerate(data.gens.bus.tolist()):
        p[i].append((1.0, dispatch["pg_pu"][g]))
        q[i].append((1.0, dispatch["qg_pu"][g]))
    for d, i in enumerate(data.loads.bus.tolist()):
        p[i].append((-1.0, dispatch["pd_pu"][d]))
        q[i].append((-1.0, dispatch["qd_pu"][d]))
    for end, buses in (("from", data.branches.from_bus), ("to", data.branches.to_bus)):
        for k, i in enumerate(buses.tolist()):
            p[i].append((-1.0, flows[f"p_{end}"][k]))
            q[i].append((-1.0, flows[f"q_{end}"][k]))
    return [_make("p_balance", _bus(data, i), linear_sum(p[i])) for i in range(n)] + [
        _make("q_balance", _bus(data, i), linear_sum(q[i])) for i in range(n)
    ]


def _reference(data: GridData, form: Formulation) -> list[Constraint]:
    refs = zip(data.buses.ref.tolist(), data.buses.ref_va_rad.tolist())
    return [_make("ref_angle", _bus(data, i), form.reference_angle(i, va)) for i, va in refs]


def _branch_limits(
    data: GridData, form: Formulation, flows: Mapping[str, tuple[Expr, ...]]
) -> list[Constraint]:
    """Thermal ``p^2 + q^2 - rate_a^2 <= 0`` at both ends; angle-difference limits."""
    br, out = data.branches, []
    for k, (f, t) in enumerate(zip(br.from_bus.tolist(), br.to_bus.tolist())):
        label, rate = _branch(data, k), float(br.rate_a_pu[k])
        for family, end in (("thermal_from", "from"), ("thermal_to", "to")):
            square = [(1.0, sympy.Pow(flows[f"{x}_{end}"][k], 2, evaluate=False)) for x in "pq"]
            out += [_make(family, label, linear_sum(square, -(rate**2)))] if np.isfinite(rate) else []
        lower, upper = form.angle_limits(f, t, float(br.angmin_rad[k]), float(br.angmax_rad[k]))
        out += [_make("angle_min", label, lower)] if np.isfinite(br.angmin_rad[k]) else []
        out += [_make("angle_max", label, upper)] if np.isfinite(br.angmax_rad[k]) else []
    return out


def _bus_limits(data: GridData, form: Formulation) -> list[Constraint]:
    out = []
    for i, (vmin, vmax) in enumerate(zip(data.buses.vmin_pu.tolist(), data.buses.vmax_pu.tolist())):
        lower, upper = form.voltage_limits(i, vmin, vmax)
        out += [_make("vm_min", _bus(data, i), lower)] if np.isfinite(vmin) else []
        out += [_make("vm_max", _bus(data, i), upper)] if np.isfinite(vmax) else []
    return out


def _generator_limits(data: GridData, dispatch: Mapping[str, Symbols]) -> list[Constraint]:
    """``pmin - pg <= 0``, ``pg - pmax <= 0`` and likewise for qg; infinite limits left out."""
    gens, out = data.gens, []
    for g in range(len(gens.bus)):
        label = _gen(data, g)
        for x, lo, hi in (("p", gens.pmin_pu[g], gens.pmax_pu[g]), ("q", gens.qmin_pu[g], gens.qmax_pu[g])):
            var = dispatch[f"{x}g_pu"][g]
            out += (
                [_make(f"{x}g_min", label, linear_sum([(-1.0, var)], float(lo)))] if np.isfinite(lo) else []
            )
            out += (
                [_make(f"{x}g_max", label, linear_sum([(1.0, var)], -float(hi)))] if np.isfinite(hi) else []
            )
    return out


def _cost(data: GridData, pg: Symbols) -> Expr:
    """Total cost per hour: ``sum_g c2 pg^2 + c1 pg + c0`` (pg in pu)."""
    gens = data.gens
    terms = [(float(gens.cost_c2_per_pu2[g]), sympy.Pow(pg[g], 2, evaluate=False)) for g in range(len(pg))]
    terms += [(float(gens.cost_c1_per_pu[g]), pg[g]) for g in range(len(pg))]
    return linear_sum(terms, float(np.sum(gens.cost_c0)))

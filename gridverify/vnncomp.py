"""The VNN-COMP runner: one ONNX model, one VNN-LIB property, one verdict in the competition's format.

The property's unsafe set is ``OR_k {y : A_k y <= b_k}`` (`gridverify.specs`). A disjunct is empty on the
box when one of its rows satisfies ``a . y > b`` for every input, i.e. ``max (-a) . y < -b``; the property
holds (``unsat``) when every disjunct is empty. Stages, cheapest first, each on the rows still open:
CROWN on all rows; then branch and bound (alpha-CROWN root, GenBaB / input splits, PGD) on what is left,
until the timeout. ``sat`` is written only for a point inside the box whose outputs lie in a disjunct both
in float64 (`Graph.forward`) and in onnxruntime on the original model.

Result file: ``unsat``, ``sat`` followed by ``((X_0 v) ... (Y_j v))``, ``unknown``, ``timeout`` or
``error``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gridverify.bab import (
    AttackConfig,
    SearchConfig,
    TightenConfig,
    Verdict,
    attack,
    line_corners,
    maximise,
    proves,
)
from gridverify.bab.bound import BoundConfig
from gridverify.bounds import AlphaConfig, crown
from gridverify.bounds.alpha import fitting
from gridverify.deadline import Deadline
from gridverify.ir import Graph, from_onnx
from gridverify.specs import VnnlibSpec, read_vnnlib

QUICK = AttackConfig(restarts=8, corners=4, steps=30)
QUICK_S = 1.0
"""The falsifier's first pass, on every disjunct before any bound: at most ``QUICK_S`` seconds (and 2% of the
timeout); the disjuncts CROWN leaves open then get the full search (`SETTINGS.attack`, two rounds)."""

CORNERS_S = 30.0
"""That full search, started from the corners that maximise the open rows' CROWN lines, gets 10% of the time
left and at most this long: at cGAN's published 900 s it had 90 s and found nothing on the unsat instances
(nCh_1 prop 3 unsat in 174 s, of which 116 s is the search); at timeouts up to 300 s the cap changes
nothing."""

SETTINGS = SearchConfig(tighten=TightenConfig(), input_split_max_dims=8)
"""The runner's search: GenBaB, and tightening of boundary neurons for rows the plain search leaves open
(ml4acopf 118 prop2 needs it: `gridverify.bab.tighten`); input splits (`INPUT_SPLITS`) on boxes with at
most 8 free dimensions: dist_shift_2023's boxes have 8 of 792, and its rows that GenBaB left open after
19 s (index2481, 9458, 6849) settle by input splits in 2-3 s (6-16 domains)."""


INPUT_SPLITS = replace(
    SearchConfig(),
    root=AlphaConfig(steps=3, optimise_intermediate=False),
    bound=BoundConfig(steps=1),
    batch=32,
    attack_share=(0.02, 0.03, 0.5),
)
"""The runner's search on boxes with few free dimensions (at most `SETTINGS.input_split_max_dims`):
input splits, each child's intermediate bounds recomputed (forward mode, `gridverify.bounds.forward`), which
is where the bound comes from: one CROWN pass per child with the parent's alphas (cGAN 32 prop 3, 256
sub-boxes: 6 alpha steps moved the largest bound 0.463 -> 0.456 at 2-3x the time); no tightening of
boundary neurons (the whole budget goes to the splits); the falsifier has run before the search (the
runner's first stages), so the search's root attack gets 3% of the budget instead of 10%."""


def settings_for(box: tuple[Tensor, Tensor], config: SearchConfig | None = None) -> SearchConfig:
    """``config`` (default `SETTINGS`), with `INPUT_SPLITS`'s bounding, batch and no tightening when the
    box has few free dimensions (the CLI passes `SETTINGS` with its memory budget)."""
    config = config or SETTINGS
    free = int((box[1] - box[0]).gt(0).sum())
    if free > config.input_split_max_dims:
        return config
    fast = INPUT_SPLITS
    return replace(
        config,
        root=fast.root,
        bound=fast.bound,
        batch=fast.batch,
        attack_share=fast.attack_share,
        tighten=None,
    )


@dataclass(frozen=True)
class InstanceResult:
    status: str  # unsat | sat | unknown | timeout | error
    seconds: float
    witness_x: np.ndarray | None = None
    witness_y: np.ndarray | None = None
    detail: str = ""

    def text(self) -> str:
        """The VNN-COMP result file."""
        if self.status != "sat" or self.witness_x is None or self.witness_y is None:
            return self.status + "\n"
        xs = [f"(X_{i} {v!r})" for i, v in enumerate(self.witness_x.tolist())]
        ys = [f"(Y_{j} {v!r})" for j, v in enumerate(self.witness_y.tolist())]
        return "sat\n(" + "\n ".join(xs + ys) + ")\n"


@dataclass(frozen=True)
class _Rows:
    """Single rows of all disjuncts as maximisation problems: ``c . y <= thr`` proves the row."""

    c: Tensor  # (R, n_out)
    thr: Tensor  # (R,)
    disjunct: np.ndarray  # (R,) which disjunct each row belongs to


def _rows(spec: VnnlibSpec) -> _Rows:
    cs, thrs, owner = [], [], []
    for k, d in enumerate(spec.disjuncts):
        for a, b in zip(d.a, d.b):
            cs.append(-a)
            thrs.append(-b)
            owner.append(k)
    return _Rows(torch.tensor(np.array(cs)), torch.tensor(thrs), np.array(owner))


def _box(graph: Graph, spec: VnnlibSpec) -> tuple[Tensor, Tensor]:
    shape = graph.nodes[graph.inputs[0][1]].shape
    lo = torch.tensor(spec.input_lower, dtype=torch.float64).reshape(1, *shape)
    hi = torch.tensor(spec.input_upper, dtype=torch.float64).reshape(1, *shape)
    return lo, hi


def _open_rows(rows: _Rows, proved: np.ndarray) -> np.ndarray:
    """Rows of disjuncts that no proved row has emptied yet."""
    done = np.zeros(int(rows.disjunct.max()) + 1 if rows.disjunct.size else 0, dtype=bool)
    np.logical_or.at(done, rows.disjunct, proved)
    return ~done[rows.disjunct]


def _onnx_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [1 if not isinstance(s, int) else s for s in inp.shape]
    dtype = np.float64 if "double" in inp.type else np.float32
    out = session.run(None, {inp.name: x.reshape(shape).astype(dtype)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def _confirm(graph: Graph, spec: VnnlibSpec, model: Path, x: Tensor) -> InstanceResult | None:
    """A ``sat`` result if x is in the box and unsafe in float64 and in onnxruntime; else None."""
    xs = x.reshape(1, -1).to(torch.float64).numpy()
    if not bool(spec.in_box(xs)[0]):
        return None
    y64 = graph.forward(x.reshape(1, *x.shape).to(torch.float64))[graph.outputs[0][0]].reshape(1, -1).numpy()
    y_ort = _onnx_outputs(model, xs[0]).reshape(1, -1)
    if bool(spec.is_unsafe(y64)[0]) and bool(spec.is_unsafe(y_ort)[0]):
        return InstanceResult("sat", 0.0, xs[0], y64[0])
    return None


def verify_instance(
    model: str | Path, prop: str | Path, timeout_s: float, config: SearchConfig | None = None
) -> InstanceResult:
    """Decide one instance within ``timeout_s`` seconds (see the module docstring)."""
    deadline = Deadline.after(timeout_s)
    graph, spec = from_onnx(model), read_vnnlib(prop)
    out_node = graph.nodes[graph.outputs[0][1]]
    spec.check_sizes(graph.nodes[graph.inputs[0][1]].size, out_node.size)
    box, rows = _box(graph, spec), _rows(spec)
    config = settings_for(box, config)

    def done(result: InstanceResult) -> InstanceResult:
        return replace(result, seconds=deadline.elapsed_s())

    if any(len(d.b) == 0 for d in spec.disjuncts):  # a disjunct without rows: any input is a witness
        sat = _confirm(graph, spec, Path(model), (box[0] + box[1])[0] / 2)
        return done(sat or InstanceResult("unknown", 0.0, detail="no output constraint"))
    every = np.arange(len(spec.disjuncts))
    burst = deadline.until(deadline.start + min(QUICK_S, 0.02 * timeout_s))
    sat = _falsify(graph, spec, Path(model), box, rows, every, QUICK, None, burst)
    if sat is not None:
        return done(replace(sat, detail="falsifier"))
    bounds = crown(graph, box, spec=rows.c)
    thr = _strict(rows.thr)
    proved = proves(bounds.upper[0].to(thr), thr, closed=True).cpu().numpy()
    todo = np.flatnonzero(_open_rows(rows, proved) & ~proved)
    if todo.size == 0:
        return done(InstanceResult("unsat", 0.0, detail="CROWN"))
    # the disjuncts CROWN leaves open, from the corners that maximise their rows' CROWN lower lines (each
    # corner guarantees at least its line's value)
    left = np.unique(rows.disjunct[todo])
    corners = line_corners(bounds.linear, graph, *box)
    until = deadline.until(time.monotonic() + min(CORNERS_S, max(QUICK_S, 0.1 * deadline.remaining_s())))
    rounds = replace(config.attack, rounds=max(config.attack.rounds, 2))
    sat = _falsify(graph, spec, Path(model), box, rows, left, rounds, corners, until)
    if sat is not None:
        return done(replace(sat, detail="falsifier, from the CROWN lines"))
    # the root's intermediate alphas shared when their own would not fit (vit_2023: 26e6 entries)
    root = fitting(graph, None, rows.c[todo], config.root, config.memory_gb)
    results = maximise(
        graph, box, rows.c[todo], threshold=thr[todo], config=replace(config, root=root), closed=True,
        deadline=deadline,
    )  # fmt: skip
    witnesses = torch.zeros(rows.c.shape[0], *box[0].shape[1:], dtype=torch.float64)
    witnesses[:] = ((box[0] + box[1]) / 2)[0]
    for k, r in zip(todo, results):
        proved[k] |= r.verdict is Verdict.VERIFIED
        witnesses[k] = r.witness.reshape(witnesses.shape[1:])
        if r.verdict is Verdict.VIOLATED and len(spec.disjuncts[rows.disjunct[k]].b) == 1:
            sat = _confirm(graph, spec, Path(model), r.witness)
            if sat is not None:
                return done(replace(sat, detail="branch and bound"))
    if not _open_rows(rows, proved).any():
        return done(InstanceResult("unsat", 0.0, detail="branch and bound"))
    left = np.unique(rows.disjunct[_open_rows(rows, proved)])
    if not deadline.passed():  # the open disjuncts' conjunctions, from their rows' witnesses
        forever = replace(config.attack, rounds=1_000_000)
        sat = _falsify(graph, spec, Path(model), box, rows, left, forever, witnesses, deadline)
        if sat is not None:
            return done(replace(sat, detail="falsifier, after branch and bound"))
    why = sorted({r.stopped for k, r in zip(todo, results) if not proved[k]})
    detail = f"branch and bound on the open rows ended by: {', '.join(why)}; then the falsifier"
    seconds = deadline.elapsed_s()
    return InstanceResult("timeout" if seconds >= timeout_s else "unknown", seconds, detail=detail)


def _strict(thr: Tensor) -> Tensor:
    """The thresholds a proof must stay strictly below: the unsafe sets ``c . y >= thr`` are closed, so a
    bound equal to ``thr`` proves nothing, and the bound's last bits (CROWN's sums round to nearest) are
    kept out by a margin of 1e-12 relative. A point found above the lowered threshold is still a
    counterexample only once float64 and onnxruntime confirm it against the property itself."""
    thr = thr.to(torch.float64)
    return thr - 1e-12 * (1.0 + thr.abs())


def _disjunct_rows(rows: _Rows, which: np.ndarray) -> Tensor:
    """(D, K) indices of the rows of the disjuncts ``which``, padded to the largest K by repeating a row:
    disjunct d is entered when ``min_k (c_k . y - thr_k) >= 0`` over its rows k."""
    members = [np.flatnonzero(rows.disjunct == k) for k in which]
    width = max(len(m) for m in members)
    return torch.tensor(np.array([np.resize(m, width) for m in members]))


def _falsify(
    graph: Graph,
    spec: VnnlibSpec,
    model: Path,
    box: tuple[Tensor, Tensor],
    rows: _Rows,
    which: np.ndarray,
    config: AttackConfig,
    row_points: Tensor | None,
    deadline: Deadline,
) -> InstanceResult | None:
    """Search the disjuncts ``which`` for an input that enters one (`gridverify.bab.attack`), each also
    started from the points ``row_points`` (R, *S_in) of its rows; a ``sat`` result for the first point
    that float64 and onnxruntime both confirm, else None."""
    index = _disjunct_rows(rows, which)
    n = index.shape[0]
    lo, hi = (t.expand(n, *t.shape[1:]) for t in box)
    starts = None if row_points is None else row_points[index].to(box[0].dtype)
    x, margin = attack(
        graph, graph.outputs[0][0], rows.c[index], lo, hi, config,
        offset=rows.thr[index], starts=starts, target=0.0, deadline=deadline,
    )  # fmt: skip
    for k in torch.argsort(margin, descending=True).tolist():
        if not float(margin[k]) >= 0.0:
            return None
        sat = _confirm(graph, spec, model, x[k])
        if sat is not None:
            return sat
    return None

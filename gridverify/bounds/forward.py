"""Forward-mode linear bounds: every node as lower and upper linear functions of the few free inputs.

For a graph whose input box has few non-degenerate dimensions (``n``: the VNN-COMP cGAN generators take
5 inputs, closed-loop controllers 2-6), each node z gets, per domain,

    w_lo . x + b_lo  <=  z(x)  <=  w_hi . x + b_hi        for every x of the box,

with ``w`` of shape ``(B, n, *S_z)``, built in topological order (Fast-Lin / CROWN's forward mode):

- input: the identity on the free dimensions; fixed dimensions go into the bias;
- linear op ``y = L(x_1..x_k) + c``: with centre ``(lo + hi) / 2`` and radius ``(hi - lo) / 2`` (both linear
  in x), ``y_lo = L(centre) - |L| radius + c`` and ``y_hi = L(centre) + |L| radius + c``. ``L`` is the op's
  ``forward`` less ``forward(0)``; ``|L| v`` for ``v >= 0`` is the op's exact centre-radius interval of
  ``[-v, v]`` less ``forward(0)`` (every registered linear op's interval is the exact image of a box:
  `tests/bounds/test_forward.py` checks it against the Jacobian), applied to ``v+`` and ``v-`` separately;
- nonlinear op with relaxation ``sum_k lw_k x_k + lb <= f <= sum_k uw_k x_k + ub`` on its inputs' boxes:
  ``f_lo = sum_k (lw_k+ lo_k + lw_k- hi_k) + lb``, and the mirror for ``f_hi``;
- an op outside both (none today): the constant functions of its interval.

The node's interval is then intersected with ``min / max`` of its functions over the box, so the next
relaxations are built on the tighter interval. The cost is ``O(n)`` times IBP per node, against one
backward pass per neuron for CROWN, and the bounds reach every node (convolutions included), which the
CROWN plan leaves to IBP. Rounding: the sums round to nearest, as CROWN's back-substitution does; each
concretised bound is moved outward by ``MARGIN`` of its magnitude.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from gridverify.bounds.core import LINEAR_ROUNDING as ROUNDING
from gridverify.bounds.core import InputBox, Interval, Plan, Relaxer
from gridverify.ir.graph import Graph
from gridverify.ops import OpDef, Relaxation, get_op

MAX_INPUTS = 12
"""Forward mode runs when the input box has at most this many non-degenerate dimensions."""

MARGIN = 1e-10
"""Relative outward margin of every concretised forward bound (of ``|b| + sum |w| max(|lo|, |hi|)``)."""


@dataclass(frozen=True)
class Form:
    """Lower and upper linear functions of the free inputs: ``w`` (B, n, *S), ``b`` (B, *S); where known,
    ``reach_lo``, ``reach_hi`` (B, *S): ``sum_n |w_n| max(|lo_n|, |hi_n|)`` of each side (`_reach_sum`)."""

    w_lo: Tensor
    b_lo: Tensor
    w_hi: Tensor
    b_hi: Tensor
    reach_lo: Tensor | None = None
    reach_hi: Tensor | None = None


def free_dims(graph: Graph, box: InputBox) -> Tensor | None:
    """Flat indices of the input dimensions with positive width in some domain, or None when the graph
    has several inputs, none (a point: IBP is exact up to rounding) or more than `MAX_INPUTS` free
    dimensions (forward mode would not pay)."""
    if len(graph.inputs) != 1:
        return None
    lo, hi = box[graph.inputs[0][0]]
    free = (hi > lo).reshape(lo.shape[0], -1).any(0).nonzero().squeeze(1)
    return free if 0 < free.numel() <= MAX_INPUTS else None


@dataclass(frozen=True)
class _Entry:
    """What a memo holds valid for: the graph, the box's tensors (identity and in-place version), the base
    intervals (the very object: kept alive, so its identity cannot be reused) and the plan's nodes."""

    graph: weakref.ref[Graph]
    lo: weakref.ref[Tensor]
    hi: weakref.ref[Tensor]
    versions: tuple[int, int]
    base: object
    needed: tuple[int, ...]
    found: dict[int, Interval]


_MEMO: OrderedDict[int, _Entry] = OrderedDict()
_MEMO_SIZE = 4
"""Forward intervals of the last few boxes, by the identity of the box's tensors: alpha-CROWN propagates
the same box once per step (after a `crown` pass on it), and the forward bounds do not depend on its
parameters; they are computed once per box instead of once per step (the smooth ops' tangent searches
made that 28 of 38 s on a 2-input sin/cos graph). A hit needs the same graph object, the same box tensors
unmodified since, the same base object and plan: the forward forms read the base's intervals (a domain's
split constraints among them), and two graphs of one structure on one box tensor are not the same bounds.
Entries die with their tensors; a memo is only ever a set of valid bounds on its box, so a hit is sound."""


def _recall(graph: Graph, box: InputBox, plan: Plan, base: object) -> dict[int, Interval] | None:
    lo, hi = box[graph.inputs[0][0]]
    hit = _MEMO.get(id(lo))
    if (
        hit is None
        or hit.graph() is not graph
        or hit.lo() is not lo
        or hit.hi() is not hi
        or hit.versions != (lo._version, hi._version)
        or hit.base is not base
        or hit.needed != tuple(sorted(plan.needed))
    ):
        return None
    return hit.found


def _remember(graph: Graph, box: InputBox, plan: Plan, base: object, found: dict[int, Interval]) -> None:
    lo, hi = box[graph.inputs[0][0]]
    versions = (lo._version, hi._version)
    entry = _Entry(weakref.ref(graph), weakref.ref(lo), weakref.ref(hi), versions, base,
                   tuple(sorted(plan.needed)), found)  # fmt: skip
    _MEMO[id(lo)] = entry
    _MEMO.move_to_end(id(lo))
    while len(_MEMO) > _MEMO_SIZE:
        _MEMO.popitem(last=False)


class ForwardBounds:
    """Forms of the nodes met so far in one topological sweep (`gridverify.bounds.crown.propagate`)."""

    def __init__(
        self, graph: Graph, box: InputBox, plan: Plan, free: Tensor, relaxer: Relaxer, base: object = None
    ) -> None:
        self.graph, self.relaxer = graph, relaxer
        name, self.input_id = graph.inputs[0]
        self.memo = _recall(graph, box, plan, base)
        self.found: dict[int, Interval] = {}
        self.key = (graph, box, plan, base)
        lo, hi = box[name]
        self.lo = lo.reshape(lo.shape[0], -1)[:, free]  # (B, n)
        self.hi = hi.reshape(hi.shape[0], -1)[:, free]
        self.free = free
        flat = lo.reshape(lo.shape[0], -1)
        self.fixed = flat.clone()  # (B, numel): the box's fixed dimensions, 0 at the free ones
        self.fixed[:, free] = 0.0
        self.forms: dict[int, Form] = {}
        self.last_use = _last_uses(graph, plan)
        self.relaxed = _relaxed_inputs(graph, plan)

    def step(self, i: int, intervals: list[Interval | None], lo: Tensor, hi: Tensor) -> Interval:
        """Node i's form from its inputs' (their intervals are final), and ``(lo, hi)`` intersected with
        its concretisation (no gradient flows through forms: alpha-CROWN optimises the backward lines)."""
        if self.memo is not None:
            known = self.memo.get(i)
            return (lo, hi) if known is None else (torch.maximum(lo, known[0]), torch.minimum(hi, known[1]))
        with torch.no_grad():
            form = self._form(i, intervals, (lo, hi))
            f_lo, f_hi = lo, hi
            if i in self.relaxed:
                (f_lo, f_hi), form = self._concretise(form)
        self.forms[i] = form
        for j in set(self.graph.nodes[i].inputs):
            if self.last_use.get(j, -1) <= i:
                self.forms.pop(j, None)
        if i in self.relaxed:
            self.found[i] = (f_lo, f_hi)
        if i == max(self.relaxed):  # the target: the last node of the sweep
            _remember(*self.key, self.found)
        return torch.maximum(lo, f_lo), torch.minimum(hi, f_hi)

    def _form(self, i: int, intervals: list[Interval | None], own: Interval) -> Form:
        node = self.graph.nodes[i]
        op = get_op(node.op)
        if node.op == "input":
            return self._input_form(node.shape)
        if node.op == "const":
            v = node.kwargs["value"].like(self.lo).unsqueeze(0)
            zero = v.new_zeros((1, self.free.numel(), *node.shape))
            return Form(zero, v, zero, v)
        inputs = [self.forms.get(j) for j in node.inputs]
        if any(f is None for f in inputs):
            return self._constant(own)
        if op.kind == "linear":
            return self._through_linear(i, inputs)  # type: ignore[arg-type]
        if op.kind == "nonlinear":
            return self._through_relaxation(i, inputs, intervals)  # type: ignore[arg-type]
        return self._constant(own)

    def _input_form(self, shape: tuple[int, ...]) -> Form:
        """The identity on the free dimensions; the fixed ones (equal ends) in the bias."""
        n = self.free.numel()
        w = self.lo.new_zeros((1, n, self.fixed.shape[1]))
        w[0, torch.arange(n), self.free] = 1.0
        w = w.reshape(1, n, *shape)
        b = self.fixed.reshape(-1, *shape)
        return Form(w, b, w, b)

    def _constant(self, iv: Interval) -> Form:
        lo, hi = iv
        zero = lo.new_zeros((lo.shape[0], self.free.numel(), *lo.shape[1:]))
        return Form(zero, lo, zero, hi)

    def _through_linear(self, i: int, inputs: list[Form]) -> Form:
        """Centre-radius: ``y_lo = L c - |L| r``, ``y_hi = L c + |L| r`` with ``c = (lo + hi) / 2`` and
        ``r = (hi - lo) / 2`` (functions: bias and weights), which is ``L+ lo + L- hi`` and ``L+ hi + L- lo``
        exactly; two applications of the op per column instead of four. Widened by `ROUNDING` of ``|L|``
        applied to the magnitudes of both functions, added to the radius's bias before ``|L|`` (``|L|`` is
        linear and nonnegative): the widening bounds every rounding of ``c``, ``r`` and the sums, which
        act on values at most that size (an upper function 20 orders above the lower one, exp over
        [9.5, 110], costs the lower bias its precision either way, and the widening covers it)."""
        node = self.graph.nodes[i]
        op, kw = get_op(node.op), node.kwargs
        batch = max(max(f.w_lo.shape[0], f.b_lo.shape[0]) for f in inputs)
        n = self.free.numel()
        centres, radii = [], []  # per input: [bias, weights] of c and of r, (batch * (n + 1), *S)
        for f, j in zip(inputs, node.inputs):
            shape = self.graph.nodes[j].shape
            mag = (self._magnitude(f, shape) + 0.0).expand(batch, *shape)
            centres.append(_stack(0.5 * (f.b_lo + f.b_hi), 0.5 * (f.w_lo + f.w_hi), batch, n, shape))
            r_b = 0.5 * (f.b_hi - f.b_lo) + ROUNDING * mag
            radii.append(_stack(r_b, 0.5 * (f.w_hi - f.w_lo), batch, n, shape))
        zero = [c.new_zeros((1, *c.shape[1:])) for c in centres]
        origin = op.forward(*zero, **kw)
        plain = (op.forward(*centres, **kw) - origin).reshape(batch, n + 1, *node.shape)
        spread = _abs_apply(op, kw, radii, origin).reshape(batch, n + 1, *node.shape)
        low, high = plain - spread, plain + spread
        const = origin.reshape(1, *node.shape)
        return Form(low[:, 1:], low[:, 0] + const, high[:, 1:], high[:, 0] + const)

    def _magnitude(self, f: Form, shape: tuple[int, ...]) -> Tensor:
        """(B, *S) ``|b| + sum |w| max(|lo|, |hi|)`` over both functions: the size of the values whose
        rounding a linear map's sums can act on."""
        size = self._reach_sum(f.w_lo, f.reach_lo, len(shape)) + self._reach_sum(
            f.w_hi, f.reach_hi, len(shape)
        )
        return (size + f.b_lo.abs() + f.b_hi.abs()).nan_to_num(nan=torch.inf)

    def _reach_sum(self, w: Tensor, known: Tensor | None, rank: int) -> Tensor:
        """(B, *S) ``sum_n |w_n| max(|lo_n|, |hi_n|)``: ``known`` (a form's `reach_lo` / `reach_hi`) when
        given, else computed from ``w`` (B, n, *S) of rank ``2 + rank``."""
        if known is not None:
            return known
        reach = torch.maximum(self.lo.abs(), self.hi.abs()).reshape(-1, self.free.numel(), *(1,) * rank)
        return (w.abs() * reach).sum(1)

    def _through_relaxation(self, i: int, inputs: list[Form], intervals: list[Interval | None]) -> Form:
        node = self.graph.nodes[i]
        lows = tuple(intervals[j][0].unsqueeze(1) for j in node.inputs)  # type: ignore[index]
        ups = tuple(intervals[j][1].unsqueeze(1) for j in node.inputs)  # type: ignore[index]
        r: Relaxation = self.relaxer(i, i, lows, ups)  # lines (B, 1, *S_out)
        out = node.shape
        w_lo = w_hi = b_lo = b_hi = mag_lo = mag_hi = far_lo = far_hi = None
        for k, (f, j) in enumerate(zip(inputs, node.inputs)):
            f = _aligned(f, len(self.graph.nodes[j].shape), len(out))
            reach = self._reach(f.w_lo.ndim)
            lw, uw = r.lw[k], r.uw[k]
            if bool((lw >= 0).all()) and bool((uw >= 0).all()):
                # nondecreasing lines (relu, sigmoid, tanh...): each side reads its own function only, and
                # |lw w| = lw |w| (half the work on the (B, n, *S) forms)
                wl, wh = lw * f.w_lo, uw * f.w_hi  # 0 * inf: NaN, then inf
                bl, bh = _times(lw, f.b_lo.unsqueeze(1)), _times(uw, f.b_hi.unsqueeze(1))
                rank = f.w_lo.ndim - 2
                rl = lw * self._reach_sum(f.w_lo, f.reach_lo, rank).unsqueeze(1)
                rh = uw * self._reach_sum(f.w_hi, f.reach_hi, rank).unsqueeze(1)
            else:
                wl = lw.clamp(min=0) * f.w_lo + lw.clamp(max=0) * f.w_hi  # 0 * inf: NaN, then inf
                wh = uw.clamp(min=0) * f.w_hi + uw.clamp(max=0) * f.w_lo
                b_l, b_h = f.b_lo.unsqueeze(1), f.b_hi.unsqueeze(1)
                bl = _times(lw.clamp(min=0), b_l) + _times(lw.clamp(max=0), b_h)
                bh = _times(uw.clamp(min=0), b_h) + _times(uw.clamp(max=0), b_l)
                # each term's own size: the sums over inputs below may cancel what their rounding acts on
                rl, rh = (wl.abs() * reach).sum(1, keepdim=True), (wh.abs() * reach).sum(1, keepdim=True)
            w_lo, w_hi = (wl, wh) if w_lo is None or w_hi is None else (w_lo + wl, w_hi + wh)
            b_lo, b_hi = (bl, bh) if b_lo is None or b_hi is None else (b_lo + bl, b_hi + bh)
            # the reach sums of the inputs' terms: at least the sum's own (the triangle inequality)
            far_lo, far_hi = (rl, rh) if far_lo is None or far_hi is None else (far_lo + rl, far_hi + rh)
            ml, mh = bl.abs() + rl, bh.abs() + rh
            mag_lo, mag_hi = (ml, mh) if mag_lo is None or mag_hi is None else (mag_lo + ml, mag_hi + mh)
        if w_lo is None or w_hi is None or b_lo is None or b_hi is None or mag_lo is None or mag_hi is None:
            raise ValueError(f"op {node.op!r} without inputs")
        if far_lo is None or far_hi is None:
            raise ValueError(f"op {node.op!r} without inputs")
        # the offsets can cancel the carried biases (a tangent's offset against its slope times a bias), and
        # the inputs' terms each other: widen by the magnitudes of every term, not of the sums
        err_lo = ROUNDING * (_times(r.lb.abs(), torch.ones_like(b_lo)) + mag_lo)
        err_hi = ROUNDING * (_times(r.ub.abs(), torch.ones_like(b_hi)) + mag_hi)
        b_lo = (b_lo + r.lb - err_lo).squeeze(1)
        b_hi = (b_hi + r.ub + err_hi).squeeze(1)
        shape = (-1, self.free.numel(), *out)
        return Form(
            w_lo.expand(*w_lo.shape[:2], *out).reshape(shape),
            b_lo.expand(b_lo.shape[0], *out),
            w_hi.expand(*w_hi.shape[:2], *out).reshape(shape),
            b_hi.expand(b_hi.shape[0], *out),
            far_lo.squeeze(1).expand(far_lo.shape[0], *out),
            far_hi.squeeze(1).expand(far_hi.shape[0], *out),
        )

    def _reach(self, ndim: int) -> Tensor:
        """(B, n, 1, ...) of rank ``ndim``: ``max(|lo|, |hi|)`` of each free input, the largest ``|x_j|``."""
        reach = torch.maximum(self.lo.abs(), self.hi.abs())
        return reach.reshape(*reach.shape, *(1,) * (ndim - 2))

    def _concretise(self, form: Form) -> tuple[Interval, Form]:
        """min / max over the box of the form's lower / upper function, moved outward by `MARGIN`; and the
        form with its reach sums (`Form.reach_lo`, `reach_hi`) from the same ``|w|``: the relaxation and
        the linear map that read the form need them (two fewer passes over its (B, n, *S) weights each)."""
        shape = form.b_lo.shape[1:]
        size = max(self.lo.shape[0], form.w_lo.shape[0], form.b_lo.shape[0])
        # centre-radius of the box, (B, n); min of w . x over it is w . c - |w| . r, and the margin reads
        # |w| . reach: one |w| per side, contracted over the n inputs (bmm, no (B, n, *S) products)
        centre, radius = 0.5 * (self.lo + self.hi), 0.5 * (self.hi - self.lo)
        reach = torch.maximum(self.lo.abs(), self.hi.abs())
        spread = radius + MARGIN * reach

        both = torch.stack([spread, reach], 1).expand(size, -1, -1)  # (B, 2, n)

        def side(w: Tensor, b: Tensor, sign: float) -> tuple[Tensor, Tensor]:
            w = w.reshape(w.shape[0], w.shape[1], -1).expand(size, -1, -1)
            b = b.reshape(b.shape[0], -1)
            c = torch.einsum("bns,bn->bs", w, centre.expand(size, -1))
            r, far = torch.einsum("bns,bkn->kbs", w.abs(), both).unbind(0)
            v = c + sign * (r + MARGIN * b.abs()) + b
            return torch.where(torch.isnan(v), torch.full_like(v, sign * torch.inf), v), far

        (low, far_lo), (high, far_hi) = side(form.w_lo, form.b_lo, -1.0), side(form.w_hi, form.b_hi, 1.0)
        reached = replace(form, reach_lo=far_lo.reshape(size, *shape), reach_hi=far_hi.reshape(size, *shape))
        return (low.reshape(size, *shape), high.reshape(size, *shape)), reached


def _last_uses(graph: Graph, plan: Plan) -> dict[int, int]:
    """node -> the last needed node that reads it (its form can be dropped after that)."""
    last: dict[int, int] = {}
    for i in sorted(plan.needed):
        for j in graph.nodes[i].inputs:
            last[j] = max(last.get(j, -1), i)
    return last


def _relaxed_inputs(graph: Graph, plan: Plan) -> frozenset[int]:
    """Nodes whose interval is read: inputs of nonlinear ops, and the target (the last needed node)."""
    found = {max(plan.needed)}
    for i in plan.needed:
        if get_op(graph.nodes[i].op).kind == "nonlinear":
            found.update(graph.nodes[i].inputs)
    return frozenset(found)


def _stack(b: Tensor, w: Tensor, batch: int, n: int, shape: tuple[int, ...]) -> Tensor:
    """``[b; w_1..w_n]`` per domain, flattened to ``(batch * (n + 1), *shape)`` for an op's forward."""
    b = b.expand(batch, *shape).unsqueeze(1)
    w = w.expand(batch, n, *shape)
    return torch.cat([b, w], 1).reshape(batch * (n + 1), *shape)


def _abs_apply(op: OpDef, kw: dict[str, Any], radii: list[Tensor], origin: Tensor) -> Tensor:
    """``|L| v`` for signed ``v`` (one per input): the op's ``abs_linear``, else ``|L| v+ - |L| v-`` with
    each term from the op's interval of ``[-v, v]`` (both signs in one batch)."""
    if op.abs_linear is not None:
        return op.abs_linear(*radii, **kw)
    if op.interval is None:
        raise ValueError(f"linear op {op.name!r} has no interval")
    n = radii[0].shape[0]
    signed = [torch.cat([v.clamp(min=0), (-v).clamp(min=0)]) for v in radii]
    _, up = op.interval(tuple(-v for v in signed), tuple(signed), **kw)
    up = up - origin
    return up[:n] - up[n:]


def _aligned(f: Form, rank: int, out_rank: int) -> Form:
    """A form of a rank-``rank`` input laid out to broadcast against the output: ``w`` (B, n, 1.., *S),
    ``b`` (B, 1.., *S)."""
    pad = (1,) * (out_rank - rank)
    w_lo = f.w_lo.reshape(*f.w_lo.shape[:2], *pad, *f.w_lo.shape[2:])
    w_hi = f.w_hi.reshape(*f.w_hi.shape[:2], *pad, *f.w_hi.shape[2:])
    b_lo = f.b_lo.reshape(f.b_lo.shape[0], *pad, *f.b_lo.shape[1:])
    b_hi = f.b_hi.reshape(f.b_hi.shape[0], *pad, *f.b_hi.shape[1:])
    r_lo = (
        None if f.reach_lo is None else f.reach_lo.reshape(f.reach_lo.shape[0], *pad, *f.reach_lo.shape[1:])
    )
    r_hi = (
        None if f.reach_hi is None else f.reach_hi.reshape(f.reach_hi.shape[0], *pad, *f.reach_hi.shape[1:])
    )
    return Form(w_lo, b_lo, w_hi, b_hi, r_lo, r_hi)


def _times(slope: Tensor, t: Tensor) -> Tensor:
    """``slope * t`` with ``0 * inf = 0`` (an overflowed bias where a line's slope is 0)."""
    prod = slope * t
    return torch.where(slope == 0, torch.zeros_like(prod), prod)

"""IBP and CROWN (backward linear bound propagation) on a `Graph`.

CROWN, for a target node t and a specification C: start from ``A_t = C`` and walk the target's ancestors in
reverse topological order, summing coefficients over consumers. A linear op passes ``A`` through its
transpose, obtained from its ``forward`` by a vector-Jacobian product; a nonlinear op with relaxation
``sum_k lw_k x_k + lb <= f(x) <= sum_k uw_k x_k + ub`` passes ``A+ * lw_k + A- * uw_k`` to input k and adds
``A+ * lb + A- * ub`` to the bias (this yields a lower bound; upper bounds come from ``-C``). At the graph
inputs, ``min_x A x = A+ l + A- u``. Every input of a relaxation needs an interval first: nodes produced by
linear maps and products get their own CROWN pass (C = +-identity), intersected with IBP; the rest IBP.

Arithmetic: float64 only (`ibp`, `crown` and `alpha_crown` refuse other dtypes with a ValueError, see
`gridverify.bounds.core.CERTIFIED_DTYPE`). Every relaxation line and every nonlinear interval is rounded
outward by the op registry (`gridverify.ops.registry.outward`), and nonlinear intervals are clamped to the
op's true range. The back-substitution's own sums and products round to nearest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gridverify.bounds.core import (
    BoundResult,
    BoxLike,
    InputBox,
    Interval,
    LinearBounds,
    Plan,
    Relaxer,
    as_box,
    describe,
    make_plan,
    node_interval,
    spec_matrix,
)
from gridverify.bounds.forward import ForwardBounds, free_dims
from gridverify.ir.builder import lower_fused
from gridverify.ir.graph import Graph
from gridverify.ops import DomainError, Relaxation, get_op

Visitor = Callable[[int, Tensor], tuple[Tensor, Tensor | None]]
"""(node, its summed coefficient A) -> (A to propagate, bias gained or None). Used by branch and bound to
add split constraints (beta-CROWN terms) and to record coefficients for branching scores."""


@dataclass
class Frontier:
    """Where a backward pass enters ``nodes`` (a part of the graph closed under ancestors, e.g. the
    piecewise-linear part: `gridverify.bounds.lp.piecewise_nodes`): the first node of the pass at which it
    and every node still pending lie in ``nodes``. The pass sets ``coeffs`` (each of those nodes'
    coefficient, (b, m, *S), before any visit of theirs) and ``bias`` (b, m), so that the bound so far is
    ``sum_j coeffs[j] . y_j + bias``: a program over ``nodes`` can finish it exactly
    (`gridverify.bab.lp_cut`)."""

    nodes: frozenset[int]
    coeffs: dict[int, Tensor] | None = None
    bias: Tensor | None = None


def flat_sum(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], t.shape[1], -1).sum(-1)


def safe_dot(a: Tensor, b: Tensor) -> Tensor:
    """sum over S of a*b with 0 * inf = 0 (infinite offsets of overflowed relaxations)."""
    prod = a * b
    return flat_sum(torch.where(a == 0, torch.zeros_like(prod), prod))


def _unbroadcast(t: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a (b, m, *S_broadcast) coefficient down to (b, m, *shape)."""
    lead = t.ndim - 2 - len(shape)
    if lead > 0:
        t = t.sum(dim=tuple(range(2, 2 + lead)))
    dims = [2 + k for k, s in enumerate(shape) if s == 1 and t.shape[2 + k] != 1]
    return t.sum(dim=dims, keepdim=True) if dims else t


def _transpose_linear(
    graph: Graph, i: int, a: Tensor, magnitudes: bool = False
) -> tuple[list[Tensor], Tensor]:
    """A through a linear op: (coefficients per input, bias gained). The coefficients come from the op's
    adjoint, or a vector-Jacobian product of its forward; the bias from its constant term, if any.
    ``magnitudes``: ``|L|^T a`` instead (through the op's ``abs_linear`` where it has one), no bias."""
    node = graph.nodes[i]
    op, kw = get_op(node.op), node.kwargs
    const = op.constant_term(**kw) if op.constant_term is not None else None
    bias = a.new_zeros(a.shape[:2]) if const is None or magnitudes else flat_sum(a * const.like(a))
    forward = op.forward
    if magnitudes and op.abs_linear is not None:
        forward = op.abs_linear
    elif op.adjoint is not None:
        return list(op.adjoint(a, **kw)), bias
    b, m = a.shape[:2]
    flat = a.reshape(b * m, *node.shape)
    shapes = [graph.nodes[j].shape for j in node.inputs]
    with torch.enable_grad():
        primals = [a.new_zeros((b * m, *s), requires_grad=True) for s in shapes]
        y = forward(*primals, **kw)
        grads = torch.autograd.grad(
            y, primals, grad_outputs=flat.expand_as(y), create_graph=a.requires_grad, allow_unused=True
        )
    coeffs = [
        (torch.zeros_like(p) if g is None else g).reshape(b, m, *s) for g, p, s in zip(grads, primals, shapes)
    ]
    return coeffs, bias


def backward(
    graph: Graph,
    start: int,
    a0: Tensor,
    intervals: list[Interval | None],
    relaxer: Relaxer,
    visit: Visitor | None = None,
    cuts: dict[int, tuple[Tensor, Tensor] | None] | None = None,
    frontier: Frontier | None = None,
    magnitudes: bool = False,
) -> tuple[dict[int, Tensor], Tensor]:
    """Lower linear bound of ``<a0, y_start>``: ``{input node: (b, m, *S)}`` coefficients, ``(b, m)`` bias.

    ``cuts``: nodes that may separate the inputs from ``start`` (every path passes through them; only
    constants join below). When the pass reaches such a node ``k`` with nothing but constants pending below
    it, ``cuts[k]`` becomes the same bound as a linear function of ``y_k`` (before ``visit`` at ``k``): its
    coefficients and its bias, the pending constants included. ``frontier``: set where the pass enters its
    nodes (`Frontier`). ``magnitudes``: pass ``|A|`` through ``|L|`` and every part as its absolute value,
    so that no coefficient cancels (`reach`; the bias is then meaningless)."""
    coeffs: dict[int, Tensor] = {start: a0}
    bias = a0.new_zeros(a0.shape[:2])
    found: dict[int, Tensor] = {}
    for i in range(start, -1, -1):
        a = coeffs.pop(i, None)
        if a is None:
            continue
        if cuts is not None and i in cuts and all(graph.nodes[j].op == "const" for j in coeffs):
            pending = [flat_sum(c * graph.nodes[j].kwargs["value"].like(c)) for j, c in coeffs.items()]
            cuts[i] = (a, sum(pending, bias))
        if frontier is not None and frontier.coeffs is None and frontier.nodes.issuperset((i, *coeffs)):
            frontier.coeffs = {i: a.detach(), **{j: c.detach() for j, c in coeffs.items()}}
            frontier.bias = bias.detach()
        if visit is not None:
            a, gained = visit(i, a)
            bias = bias if gained is None else bias + gained
        node = graph.nodes[i]
        kind = get_op(node.op).kind
        if node.op == "input":
            found[i] = a
            continue
        if node.op == "const":
            bias = bias + flat_sum(a * node.kwargs["value"].like(a))
            continue
        if kind == "linear":
            parts, gained = _transpose_linear(graph, i, a, magnitudes)
        else:
            parts, gained = _through_relaxation(graph, start, i, a, intervals, relaxer)
        if magnitudes:
            parts = [part.abs() for part in parts]
        bias = bias + gained
        for j, part in zip(node.inputs, parts):
            coeffs[j] = coeffs[j] + part if j in coeffs else part
    return found, bias


def _through_relaxation(
    graph: Graph, start: int, i: int, a: Tensor, intervals: list[Interval | None], relaxer: Relaxer
) -> tuple[list[Tensor], Tensor]:
    node = graph.nodes[i]
    lows = tuple(intervals[j][0].unsqueeze(1) for j in node.inputs)  # type: ignore[index]
    ups = tuple(intervals[j][1].unsqueeze(1) for j in node.inputs)  # type: ignore[index]
    try:
        r = relaxer(start, i, lows, ups)
    except DomainError as err:
        raise DomainError(f"{describe(graph, i)}: {err}") from None
    pos, neg = a.clamp(min=0), a.clamp(max=0)
    parts = [
        _unbroadcast(pos * lw + neg * uw, graph.nodes[j].shape) for j, lw, uw in zip(node.inputs, r.lw, r.uw)
    ]
    return parts, safe_dot(pos, r.lb) + safe_dot(neg, r.ub)


def concretize(graph: Graph, found: dict[int, Tensor], bias: Tensor, box: InputBox) -> Tensor:
    """``min over the box`` of the linear bound: ``bias + sum_i A_i+ l_i + A_i- u_i``, shape (B, m)."""
    total = bias
    for i, a in found.items():
        lo, hi = box[graph.nodes[i].kwargs["name"]]
        total = total + flat_sum(a.clamp(min=0) * lo.unsqueeze(1) + a.clamp(max=0) * hi.unsqueeze(1))
    return total


def _identity_spec(shape: tuple[int, ...], like: Tensor) -> Tensor:
    n = 1
    for s in shape:
        n *= s
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    return torch.cat([eye, -eye]).reshape(1, 2 * n, *shape)


def propagate(
    graph: Graph,
    box: InputBox,
    plan: Plan,
    relaxer: Relaxer,
    crown_nodes: tuple[int, ...] | None = None,
    base: tuple[Interval | None, ...] | None = None,
    keep_linear: bool = False,
    masks: dict[int, Tensor] | None = None,
    forward: bool | None = None,
    chunk: bool = True,
) -> tuple[list[Interval | None], dict[int, tuple[dict[int, Tensor], Tensor]]]:
    """Intervals of every needed node (IBP, CROWN on ``crown_nodes``, intersected with ``base``). With
    ``masks`` (`needed_neurons`), CROWN bounds only the masked neurons of each
    node and skips nodes without a mask; the rest keep IBP. ``keep_linear`` needs every neuron: no masks.
    ``forward``: intersect every node with its forward-mode linear bounds (`gridverify.bounds.forward`,
    when the box has few free dimensions); None: when the plan's CROWN nodes are asked for. ``chunk``: bound
    a node's neurons in chunks of rows (`INTERMEDIATE_ELEMENTS`); False for a relaxer whose lines differ
    per row of the pass (alpha-CROWN's intermediate alphas)."""
    crown_set = set(plan.crown_nodes if crown_nodes is None else crown_nodes)
    intervals: list[Interval | None] = [None] * len(graph.nodes)
    linear: dict[int, tuple[dict[int, Tensor], Tensor]] = {}
    fwd = _forward_bounds(graph, box, plan, relaxer, crown_nodes, forward, base)
    for i in sorted(plan.needed):
        lo, hi = node_interval(graph, i, intervals, box)
        if fwd is not None:
            lo, hi = fwd.step(i, intervals, lo, hi)
        if i in crown_set and (masks is None or i in masks):
            rows = None if masks is None or bool(masks[i].all()) else masks[i].nonzero().squeeze(1)
            lo, hi, lin = _crown_node(
                graph, plan, box, i, rows, lo, hi, intervals, relaxer, keep_linear, chunk
            )
            if lin is not None:
                linear[i] = lin
        if base is not None and base[i] is not None:
            lo, hi = torch.maximum(lo, base[i][0]), torch.minimum(hi, base[i][1])  # type: ignore[index]
        intervals[i] = (lo, hi)
    return intervals, linear


INTERMEDIATE_ELEMENTS = 2**24
"""Largest coefficient tensor (entries: domains x rows x node size) of an intermediate node's backward pass;
its neurons are bounded in chunks of rows below it. vit_2023's ibp_3_3_8 has 13872 softmax differences
per layer: all their rows at once asked for a 3 GB coefficient of a 13872-neuron node."""


COMPOSE_RATIO = 8
COMPOSE_TERMS = 2
"""A linear node with at least `COMPOSE_RATIO` times more neurons to bound than its one variable input has,
each a combination of at most `COMPOSE_TERMS` of the input's neurons, is bounded through its input's CROWN
lines (`_composed`) instead of a backward pass per neuron: a softmax's pairwise differences ``x_j - x_i`` of
``k`` scores are ``k - 1`` times as many as the scores (vit_2023's ibp_3_3_8: 13872 differences of 867
scores per layer, one CROWN pass 442 -> 145 s, the same bounds). Dense maps are not composed: case300's
surrogate output layer (738 neurons, each reading every hidden neuron) would be, and its screen's CROWN
bounds were looser on 2736 of 3722 rows (12 fewer proved)."""


def _crown_node(
    graph: Graph,
    plan: Plan,
    box: InputBox,
    i: int,
    rows: Tensor | None,
    lo: Tensor,
    hi: Tensor,
    intervals: list[Interval | None],
    relaxer: Relaxer,
    keep_linear: bool,
    chunk_rows: bool = True,
) -> tuple[Tensor, Tensor, tuple[dict[int, Tensor], Tensor] | None]:
    """Node ``i``'s interval intersected with CROWN's bounds of its neurons ``rows`` (all when None), in
    chunks of rows that keep every coefficient under `INTERMEDIATE_ELEMENTS`; with ``keep_linear``, the
    linear bounds (lower rows, then negated upper rows, as one pass gives them). With ``chunk_rows`` (lines
    the same for every row of a pass), a linear node with `COMPOSE_RATIO` times more such neurons than its
    input has is bounded through its input's lines (`_composed`)."""
    shape = graph.nodes[i].shape
    n = graph.nodes[i].size
    count = n if rows is None else rows.numel()
    ancestors = plan.ancestors[i] if i in plan.ancestors else graph.ancestors(i)
    widest = max(graph.nodes[j].size for j in (*ancestors, i))
    batch = max(lo.shape[0], *(iv[0].shape[0] for iv in intervals if iv is not None))
    chunk = max(1, INTERMEDIATE_ELEMENTS // (2 * batch * widest))
    source = _composable(graph, i, rows, lo, count) if chunk_rows else None
    if source is not None:  # the input's lines are one pass over all its neurons: only where that fits
        below = plan.ancestors[source] if source in plan.ancestors else graph.ancestors(source)
        widest_p = max(graph.nodes[j].size for j in (*below, source))
        if 2 * graph.nodes[source].size * batch * widest_p > 4 * INTERMEDIATE_ELEMENTS:
            source = None
    if (count <= chunk and source is None) or not chunk_rows:
        found, bias = backward(graph, i, _rows_spec(shape, rows, lo), intervals, relaxer)
        lo, hi = _tighten(lo, hi, concretize(graph, found, bias, box), rows)
        return lo, hi, (found, bias) if keep_linear else None
    through = None
    if source is not None:  # the input's lines: lower bounds of +y_p, then of -y_p
        through = backward(graph, source, _identity_spec(graph.nodes[source].shape, lo), intervals, relaxer)
    every = torch.arange(n, device=lo.device) if rows is None else rows
    lows: list[tuple[dict[int, Tensor], Tensor]] = []
    highs: list[tuple[dict[int, Tensor], Tensor]] = []
    for start in range(0, count, chunk):
        part = every[start : start + chunk]
        spec = _rows_spec(shape, part, lo)
        if through is None or source is None:
            found, bias = backward(graph, i, spec, intervals, relaxer)
        else:
            found, bias = _composed(graph, i, source, spec, through)
        lo, hi = _tighten(lo, hi, concretize(graph, found, bias, box), part)
        if keep_linear:
            k = part.numel()
            lows.append(({j: a[:, :k] for j, a in found.items()}, bias[:, :k]))
            highs.append(({j: a[:, k:] for j, a in found.items()}, bias[:, k:]))
    if not keep_linear:
        return lo, hi, None
    joined = lows + highs
    found = {j: torch.cat([f[j] for f, _ in joined], 1) for j in joined[0][0]}
    return lo, hi, (found, torch.cat([b for _, b in joined], 1))


def _composable(graph: Graph, i: int, rows: Tensor | None, like: Tensor, count: int) -> int | None:
    """The one variable input of linear node ``i`` when ``count`` of its neurons are at least `COMPOSE_RATIO`
    times its size, it is not a graph input (whose lines are exact anyway) and each of the first neurons
    ``rows`` (all when None) reads at most `COMPOSE_TERMS` of its neurons; else None."""
    node = graph.nodes[i]
    if get_op(node.op).kind != "linear":
        return None
    inputs = [k for k, j in enumerate(node.inputs) if graph.nodes[j].op != "const"]
    if len(inputs) != 1:
        return None
    source = node.inputs[inputs[0]]
    if graph.nodes[source].op == "input" or count < COMPOSE_RATIO * graph.nodes[source].size:
        return None
    probe = torch.arange(min(count, 64), device=like.device) if rows is None else rows[:64]
    c = _input_coefficients(graph, i, source, _rows_spec(node.shape, probe, like))[0]
    return source if int(c.ne(0).sum(1).max()) <= COMPOSE_TERMS else None


def _input_coefficients(graph: Graph, i: int, source: int, spec: Tensor) -> tuple[Tensor, Tensor]:
    """``spec`` (1, m, *S_i) through linear node ``i``: its coefficients on the input ``source`` (m, size)
    and the bias its constant term gains (1, m)."""
    parts, bias = _transpose_linear(graph, i, spec)
    return parts[graph.nodes[i].inputs.index(source)].reshape(spec.shape[1], -1), bias


def _composed(
    graph: Graph, i: int, source: int, spec: Tensor, through: tuple[dict[int, Tensor], Tensor]
) -> tuple[dict[int, Tensor], Tensor]:
    """The lower bound of ``<spec, y_i>`` (1, m, *S_i) through linear node ``i``'s one variable input p
    (``source``) and p's lines ``through`` (lower bounds of +y_p, then of -y_p, as `backward` gives them):
    with ``c`` the spec's coefficient on y_p, ``c+ . (lines of +y_p) + |c-| . (lines of -y_p)``, and the
    node's constant term. A nonnegative combination of valid lower bounds, so valid; the same as `backward`
    where every line below p is the same for every sign (linear parts), looser where a pass from i would
    have let two of p's neurons share a relaxation."""
    c, bias = _input_coefficients(graph, i, source, spec)
    m = spec.shape[1]
    weights = torch.cat([c.clamp(min=0), (-c).clamp(min=0)], 1)  # (m, 2 n_p), nonnegative
    if weights.count_nonzero() < 0.05 * weights.numel():
        weights = weights.to_sparse()
    found_p, bias_p = through
    found = {}
    for j, a in found_p.items():  # a: (b, 2 n_p, *S_j)
        b = a.shape[0]
        flat = a.permute(1, 0, *range(2, a.ndim)).reshape(a.shape[1], -1)
        out = (weights @ flat).reshape(m, b, *a.shape[2:])
        found[j] = out.permute(1, 0, *range(2, out.ndim))
    bias = bias + (weights @ bias_p.T).T
    return found, bias


def _forward_bounds(
    graph: Graph,
    box: InputBox,
    plan: Plan,
    relaxer: Relaxer,
    crown_nodes: tuple[int, ...] | None,
    on: bool | None,
    base: tuple[Interval | None, ...] | None = None,
) -> ForwardBounds | None:
    if on is None:
        on = crown_nodes is None or tuple(crown_nodes) == plan.crown_nodes
    free = free_dims(graph, box) if on else None
    return None if free is None else ForwardBounds(graph, box, plan, free, relaxer, base)


def _rows_spec(shape: tuple[int, ...], rows: Tensor | None, like: Tensor) -> Tensor:
    """``[+e_r; -e_r]`` for the flat neurons ``rows`` (all when None): (1, 2k, *shape)."""
    if rows is None:
        return _identity_spec(shape, like)
    n = 1
    for s in shape:
        n *= s
    eye = torch.zeros(rows.numel(), n, dtype=like.dtype, device=like.device)
    eye[torch.arange(rows.numel(), device=like.device), rows] = 1.0
    return torch.cat([eye, -eye]).reshape(1, 2 * rows.numel(), *shape)


def _tighten(lo: Tensor, hi: Tensor, bound: Tensor, rows: Tensor | None) -> Interval:
    """Intersect (lo, hi) with CROWN's ``bound`` (B, 2k): lower bounds, then negated upper bounds."""
    k = bound.shape[1] // 2
    if rows is None:
        shape = (bound.shape[0], *lo.shape[1:])
        return torch.maximum(lo, bound[:, :k].reshape(shape)), torch.minimum(hi, -bound[:, k:].reshape(shape))
    flat_lo, flat_hi = lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)
    b = bound.shape[0]
    new_lo = flat_lo.expand(b, -1).clone() if flat_lo.shape[0] != b else flat_lo.clone()
    new_hi = flat_hi.expand(b, -1).clone() if flat_hi.shape[0] != b else flat_hi.clone()
    new_lo[:, rows] = torch.maximum(new_lo[:, rows], bound[:, :k])
    new_hi[:, rows] = torch.minimum(new_hi[:, rows], -bound[:, k:])
    return new_lo.reshape(b, *lo.shape[1:]), new_hi.reshape(b, *hi.shape[1:])


ROWS = 2048
"""Rows of a specification bounded per backward pass of `final_bounds`."""


def final_bounds(
    graph: Graph,
    box: InputBox,
    output: int,
    c: Tensor,
    intervals: list[Interval | None],
    relaxer: Relaxer,
) -> tuple[Tensor, Tensor, LinearBounds]:
    """Lower and upper bounds of C y_output and their linear forms, given the intervals; `ROWS` rows of C
    per backward pass (its coefficients are rows x node size per node: case1354's 17k rows asked for GBs)."""
    m = c.shape[1]
    if m > ROWS:
        parts = [
            final_bounds(graph, box, output, c[:, k : k + ROWS], intervals, relaxer)
            for k in range(0, m, ROWS)
        ]
        joined = [p[2] for p in parts]
        linear = LinearBounds(
            {n: torch.cat([q.lower[n] for q in joined], 1) for n in joined[0].lower},
            torch.cat([q.lower_bias for q in joined], 1),
            {n: torch.cat([q.upper[n] for q in joined], 1) for n in joined[0].upper},
            torch.cat([q.upper_bias for q in joined], 1),
        )
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1), linear
    found, bias = backward(graph, output, torch.cat([c, -c], dim=1), intervals, relaxer)
    bound = concretize(graph, found, bias, box)
    # Coefficients keep the batch of C (1) where nothing batched met them (an output linear in the input).
    batch = bound.shape[0]
    found = {i: a.expand(batch, *a.shape[1:]) for i, a in found.items()}
    bias = bias.expand(batch, *bias.shape[1:])
    names = {i: graph.nodes[i].kwargs["name"] for i in found}
    linear = LinearBounds(
        {names[i]: a[:, :m] for i, a in found.items()},
        bias[:, :m],
        {names[i]: -a[:, m:] for i, a in found.items()},
        -bias[:, m:],
    )
    return bound[:, :m], -bound[:, m:], linear


def ibp_of_spec(c: Tensor, interval: Interval) -> tuple[Tensor, Tensor]:
    """Interval bounds of C y from the box of y (a zero coefficient ignores an infinite end: 0 * inf = 0)."""
    lo, hi = (t.unsqueeze(1) for t in interval)
    pos, neg = c.clamp(min=0), c.clamp(max=0)
    return safe_dot(pos, lo) + safe_dot(neg, hi), safe_dot(pos, hi) + safe_dot(neg, lo)


def resolve(graph: Graph, box: BoxLike, output: str | int | None) -> tuple[Graph, dict[str, Interval], int]:
    graph = lower_fused(graph)
    if output is None:
        if len(graph.outputs) != 1:
            raise ValueError(f"graph has outputs {[n for n, _ in graph.outputs]}: name one")
        output = graph.outputs[0][0]
    out_id = graph.output_ids[output] if isinstance(output, str) else int(output)
    return graph, as_box(graph, box), out_id


def ibp(
    graph: Graph, box: BoxLike, output: str | int | None = None, spec: Tensor | None = None
) -> BoundResult:
    """Interval bound propagation: bounds of ``C y_output`` over the box (C = identity by default).
    The box must be float64 (ValueError otherwise: float32 is not rounded outward)."""
    graph, ibox, out = resolve(graph, box, output)
    plan = make_plan(graph, out)
    intervals, _ = propagate(graph, ibox, plan, node_relaxer(graph), crown_nodes=(), forward=False)
    c = spec_matrix(graph, out, spec, next(iter(ibox.values()))[0])
    lo, hi = ibp_of_spec(c, intervals[out])  # type: ignore[arg-type]
    return BoundResult(lo, hi, tuple(intervals), None, "ibp")


def crown(
    graph: Graph,
    box: BoxLike,
    output: str | int | None = None,
    spec: Tensor | None = None,
    keep_linear: bool = False,
    base: tuple[Interval | None, ...] | None = None,
) -> BoundResult:
    """CROWN bounds of ``C y_output`` over the box, never looser than IBP (intersected with it). ``base``:
    intervals known to hold over the box (per node of the lowered graph), intersected with the computed.
    The box must be float64 (ValueError otherwise: float32 is not rounded outward)."""
    graph, ibox, out = resolve(graph, box, output)
    plan = make_plan(graph, out)
    relaxer = node_relaxer(graph)
    c = spec_matrix(graph, out, spec, next(iter(ibox.values()))[0])
    masks = None if keep_linear else needed_neurons(graph, plan, out, c)
    intervals, _ = propagate(graph, ibox, plan, relaxer, base=base, keep_linear=keep_linear, masks=masks)
    lo, hi, linear = final_bounds(graph, ibox, out, c, intervals, relaxer)
    ilo, ihi = ibp_of_spec(c, intervals[out])  # type: ignore[arg-type]
    return BoundResult(torch.maximum(lo, ilo), torch.minimum(hi, ihi), tuple(intervals), linear, "crown")


def node_relaxer(
    graph: Graph,
    alpha_of: Callable[[int, int], Tensor | None] | None = None,
    kept_alpha: Callable[[int], Tensor | None] | None = None,
) -> Relaxer:
    """The relaxer of every bound method: node ``i``'s relaxation on its input box, with the alpha
    ``alpha_of(start, i)`` gives while bounding target ``start`` (alpha-CROWN, branch and bound: computed on
    every call, so gradients reach the alphas); where it gives None or there is no ``alpha_of``, kept lines:
    with the alpha ``kept_alpha(i)`` gives (branch and bound: a domain's alphas, detached), else CROWN's
    default alpha.

    Kept lines are computed once per node and input box and reused: the passes of several targets, and
    forward mode, relax a node on the same intervals, and for S-shaped ops the default lines across the
    inflection are a search (dist_shift_2023: 86 of 121 s of bounding went to three identical computations
    of the 784 sigmoids' lines per batch). A box is known by its tensors (`_identity`), which are kept with
    their lines so that their storage is not reused while the relaxer lives."""
    kept: dict[tuple[object, ...], tuple[tuple[Tensor, ...], Relaxation]] = {}

    def relaxer(start: int, i: int, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Relaxation:
        node = graph.nodes[i]
        op, kw = get_op(node.op), node.kwargs
        alpha = None if alpha_of is None else alpha_of(start, i)
        if alpha is not None:
            return op.relaxation(lows, ups, alpha, **kw)
        key = (i, *(_identity(t) for t in (*lows, *ups)))
        if key not in kept:
            alpha = None if kept_alpha is None else kept_alpha(i)
            alpha = op.init_alpha(lows, ups, **kw) if alpha is None else alpha
            kept[key] = ((*lows, *ups), op.relaxation(lows, ups, alpha, **kw))
        return kept[key][1]

    return relaxer


def _identity(t: Tensor) -> tuple[object, ...]:
    """What makes two tensors the same values here: storage, offset, shape, strides and dtype (intervals are
    never changed in place)."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _unit_relaxer(start: int, i: int, lows: tuple[Tensor, ...], ups: tuple[Tensor, ...]) -> Relaxation:
    ones = tuple(torch.ones_like(lo) for lo in lows)
    zero = lows[0].new_zeros(())
    return Relaxation(ones, zero, ones, zero)


def needed_neurons(graph: Graph, plan: Plan, output: int, c: Tensor) -> dict[int, Tensor]:
    """Per CROWN-bounded node of ``plan``: a flat bool mask (numel,) of the neurons the rows of ``c``
    (``(B, m, *S_out)``) can depend on; nodes absent from the result are not needed at all.

    CROWN bounds an intermediate node by one backward pass per neuron (two rows each); a specification that
    reads a few outputs (one thermal residual of a 118-bus model, say) depends on a few neurons of most
    nodes downstream of the shared layers, so bounding every neuron wastes most of that work. A neuron is
    *needed* when a backward pass from the specification reaches it with a nonzero coefficient, with every
    relaxation replaced by slope 1, every linear map by its absolute value and every coefficient made
    nonnegative (so that signed sums cannot cancel: a softmax's differences ``x_j - x_i`` cancelled exactly
    under slope 1, and vit_2023's pgd_2_3_16 left 96 of its 240 query neurons at IBP, CROWN bound 29.0
    instead of 0.39 on its worst row). Neurons that are not needed keep their IBP interval: sound, and
    irrelevant to the bound.
    """
    masks: dict[int, Tensor] = {}
    wanted = set(plan.crown_nodes)

    def visit(i: int, a: Tensor) -> tuple[Tensor, None]:
        a = a.abs()
        if i in wanted:
            masks[i] = a.reshape(a.shape[0] * a.shape[1], -1).ne(0).any(0)
        return a, None

    reach(graph, plan, output, c.abs().sum(dim=(0, 1), keepdim=True), visit)
    return {i: m for i, m in masks.items() if bool(m.any())}


def reach(graph: Graph, plan: Plan, start: int, a0: Tensor, visit: Visitor) -> None:
    """Walk the dependencies of ``<a0, y_start>`` backward: every relaxation replaced by slope 1 and every
    linear map by its absolute value, with nonnegative ``a0``, so a node's coefficient is nonzero exactly
    where the rows can depend on it. ``visit`` sees each node's coefficient, as in `backward`."""
    zeros: list[Interval | None] = [
        None if i not in plan.needed else (a0.new_zeros((1, *n.shape)),) * 2
        for i, n in enumerate(graph.nodes)
    ]
    backward(graph, start, a0, zeros, _unit_relaxer, visit, magnitudes=True)

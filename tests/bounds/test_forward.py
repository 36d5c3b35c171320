"""Forward-mode linear bounds (`gridverify.bounds.forward`): the ``|L|`` of every linear op against its
Jacobian, every node's forward interval against sampling on random graphs (degenerate, tiny and very wide
boxes), exact cancellation that IBP misses, and when forward mode is off."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gridverify.bounds import crown, ibp
from gridverify.bounds.core import make_plan
from gridverify.bounds.crown import node_relaxer, propagate, resolve
from gridverify.bounds.forward import MAX_INPUTS, _abs_apply, free_dims
from gridverify.ir import GraphBuilder
from gridverify.ops import REGISTRY
from tests.bounds.random_graphs import layer_kinds, random_graph, sample_box

LINEAR = sorted(n for n, op in REGISTRY.items() if op.kind == "linear")


def _input_shapes(name: str, params: dict) -> list[tuple[int, ...]]:
    """Small input shapes each linear op accepts with its sample parameters."""
    if name == "conv":
        return [(3, *params["in_spatial"])]
    if name == "conv_transpose":
        return [(3, 4)]
    if name == "linear":
        return [(params["weight"].shape[1],)]
    if name == "scale":
        return [tuple(params["factor"].shape) or (3,)]
    if name == "concat":
        return [(2, 3), (2, 3)]
    if name in ("add", "sub"):
        return [(2, 3), (2, 3)]
    if name == "gather":
        return [(8,)]
    if name == "reshape":
        return [(2, 3)]
    if name == "permute":
        return [(2, 3)]
    return [(2, 3)]


def _params(name: str) -> list[dict]:
    extra = {
        "linear": {"weight": _Const(torch.randn(4, 3, dtype=torch.float64)), "bias": None},
        "scale": {"factor": _Const(torch.tensor([1.5, -2.0, 0.0], dtype=torch.float64))},
        "concat": {"axis": 0},
        "gather": {"index": _Const(torch.tensor([3, 0, 0, 7]))},
        "reshape": {"shape": (3, 2)},
        "permute": {"dims": (1, 0)},
        "sum": {"axes": (1,)},
    }
    return [extra[name]] if name in extra else [p for p in REGISTRY[name].sample_params if p]


def _Const(t):
    from gridverify.const import Const

    return Const(t)


@pytest.mark.parametrize("name", [n for n in LINEAR if n not in ("add", "sub", "neg")])
def test_abs_linear_is_the_jacobians_magnitude(name: str) -> None:
    """``|L| v`` (the op's ``abs_linear`` or its interval of [-v+, v+] less [-v-, v-]) equals ``|J| v`` for
    signed v: forward mode's radius is exact (up to rounding) for every registered linear op."""
    op = REGISTRY[name]
    for params in _params(name):
        shapes = _input_shapes(name, params)
        xs = [torch.zeros(1, *s, dtype=torch.float64) for s in shapes]
        origin = op.forward(*xs, **params)
        vs = [torch.randn(2, *s, dtype=torch.float64) for s in shapes]
        got = _abs_apply(op, params, vs, origin)
        jac = torch.autograd.functional.jacobian(lambda *a, p=params: op.forward(*a, **p), tuple(xs))
        want = 0.0
        for j, v in zip(jac, vs):
            mat = j.reshape(origin.numel(), -1).abs()
            want = want + (v.reshape(2, -1) @ mat.T).reshape(2, *origin.shape[1:])
        assert torch.allclose(got, want, atol=1e-12), name


@pytest.mark.parametrize("name", ["add", "sub", "neg"])
def test_abs_linear_of_sums(name: str) -> None:
    op = REGISTRY[name]
    vs = [torch.randn(2, 3, dtype=torch.float64) for _ in range(op.arity)]
    origin = op.forward(*[torch.zeros(1, 3, dtype=torch.float64)] * op.arity)
    assert torch.allclose(_abs_apply(op, {}, vs, origin), sum(vs), atol=1e-12)


def _forward_intervals(graph, lower, upper):
    graph, ibox, out = resolve(graph, (lower, upper), None)
    plan = make_plan(graph, out)
    on, _ = propagate(graph, ibox, plan, node_relaxer(graph), crown_nodes=(), forward=True)
    return graph, plan, on


@settings(max_examples=25, deadline=None, database=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(sorted(layer_kinds())),
    scale=st.sampled_from([0.0, 1e-9, 0.3, 3.0, 50.0]),
)
# found by a CI run: a linear map of an exp over [-23, 233] (terms of 1e101) had IBP lower bound 0, true -188
@example(seed=232, kind="square", scale=50.0)
@example(seed=418, kind="abs", scale=50.0)
def test_forward_intervals_contain_samples(seed: int, kind: str, scale: float) -> None:
    """Every needed node's forward-mode interval contains the node's value at sampled points and corners
    of the box: degenerate (0), tiny, moderate and very wide boxes."""
    graph = random_graph(seed, depth=4, force=kind)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(2, 3, generator=gen, dtype=torch.float64) * 2 - 1
    width = torch.rand(2, 3, generator=gen, dtype=torch.float64) * scale
    lower, upper = centre - width / 2, centre + width / 2
    if kind in ("exp",) and scale > 3:
        lower, upper = lower.clamp(-5, 5), upper.clamp(-5, 5)
    lowered, plan, iv = _forward_intervals(graph, lower, upper)
    pts = sample_box(lower, upper, 300, seed).reshape(-1, 3)
    values = lowered.forward(pts, keep_all=True)
    past_overflow: set[int] = set()  # nodes with an input whose bounds are infinite or NaN
    for i in sorted(plan.needed):
        lo, hi = iv[i]
        v = values[i].expand(pts.shape[0], *lo.shape[1:]).reshape(2, -1, *lo.shape[1:])
        slack = 1e-9 * (1 + v.abs())
        # past an overflow (an exp over a box 5e4 wide, then a linear map of [0, inf] with mixed signs:
        # seed 418, abs, 50) the graph computes NaN at some points and the bounds are NaN, the engine's
        # "undefined" (no proof reads it: `proves` is False for NaN); everything else must lie inside
        low, high = lo.unsqueeze(1).expand_as(v), hi.unsqueeze(1).expand_as(v)
        assert (v.isnan() | low.isnan() | (v >= low - slack)).all(), (kind, i)
        assert (v.isnan() | high.isnan() | (v <= high + slack)).all(), (kind, i)
        inputs = lowered.nodes[i].inputs
        if any(not (torch.isfinite(iv[j][0]).all() and torch.isfinite(iv[j][1]).all()) for j in inputs):
            past_overflow.add(i)
        assert i in past_overflow or not (lo.isnan().any() or hi.isnan().any()), (kind, i, "NaN bound")


def test_forward_bounds_see_cancellation() -> None:
    """``conv(x) - conv(x)`` is 0: forward mode gets it exactly (both terms are the same linear function
    of x), IBP gets a box as wide as twice the conv's range."""
    b = GraphBuilder()
    x = b.input("x", (2,))
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 1.0]], dtype=torch.float64)
    h = b.relu(b.linear(x, w))
    y = b.linear(h, w[:, :1].T.contiguous()) - b.linear(h, w[:, :1].T.contiguous())
    graph = b.build({"y": b.sigmoid(y)})
    lower = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    upper = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert float(ibp(graph, (lower, upper)).upper - ibp(graph, (lower, upper)).lower) > 0.1
    got = crown(graph, (lower, upper))
    assert abs(float(got.upper) - 0.5) < 1e-9 and abs(float(got.lower) - 0.5) < 1e-9


def test_conv_stack_tighter_than_ibp() -> None:
    """A relu conv stack over 2 free inputs: the forward intervals are never looser than IBP's, and much
    tighter on the last layer (the cGAN case: IBP's boxes of convolutions blow up)."""
    gen = torch.Generator().manual_seed(0)
    b = GraphBuilder()
    x = b.input("x", (2,))
    h = b.reshape(b.linear(x, torch.randn(16, 2, generator=gen, dtype=torch.float64)), (4, 4))
    for _ in range(3):
        weight = _Const(torch.randn(4, 4, 3, generator=gen, dtype=torch.float64) / 3)
        h = b.relu(
            b.apply("conv", h, weight=weight, bias=None, stride=(1,), padding=(1,), dilation=(1,), groups=1,
                    in_spatial=(4,))
        )  # fmt: skip
    graph = b.build({"y": b.reshape(h, (16,))})
    lower = torch.tensor([[-0.5, 0.1]], dtype=torch.float64)
    upper = torch.tensor([[0.5, 0.4]], dtype=torch.float64)
    loose, tight = ibp(graph, (lower, upper)), crown(graph, (lower, upper))
    assert (tight.upper <= loose.upper + 1e-12).all() and (tight.lower >= loose.lower - 1e-12).all()
    assert float((tight.upper - tight.lower).sum()) < 0.5 * float((loose.upper - loose.lower).sum())
    pts = sample_box(lower, upper, 500).reshape(-1, 2)
    ys = graph.forward(pts)["y"]
    assert (ys <= tight.upper + 1e-9).all() and (ys >= tight.lower - 1e-9).all()


def test_free_dims() -> None:
    """Forward mode needs one graph input with few free dimensions; fixed ones go into the bias."""
    b = GraphBuilder()
    x = b.input("x", (MAX_INPUTS + 1,))
    graph = b.build({"y": b.sum(b.relu(x), axes=(0,))})
    lower = torch.zeros(1, MAX_INPUTS + 1, dtype=torch.float64)
    assert free_dims(graph, {"x": (lower, lower + 1)}) is None
    upper = lower.clone()
    upper[0, 3] = 1.0
    assert free_dims(graph, {"x": (lower, upper)}).tolist() == [3]
    point = crown(graph, (lower + 0.25, lower + 0.25))  # no free dimension at all
    assert float(point.upper) == pytest.approx(0.25 * (MAX_INPUTS + 1), abs=1e-9)


def test_memo_never_serves_another_graph_or_base_on_the_same_box_tensors() -> None:
    """Forward intervals are memoised per box: two graphs of one structure (different weights) on one box
    tensor, and one graph under two bases, each get their own sound intervals (a stale memo once gave the
    second graph the first one's intervals: its first layer 8.8 off)."""
    from gridverify.ir import GraphBuilder

    box = (torch.full((1, 3), -1.0, dtype=torch.float64), torch.full((1, 3), 1.0, dtype=torch.float64))
    x = box[0] + (box[1] - box[0]) * torch.rand(
        4000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        b = GraphBuilder()
        h = b.relu(b.linear(b.input("x", (3,)), 3 * torch.randn(8, 3, generator=gen, dtype=torch.float64),
                            torch.randn(8, generator=gen, dtype=torch.float64)))  # fmt: skip
        g = b.build({"y": b.sigmoid(b.linear(h, torch.randn(2, 8, generator=gen, dtype=torch.float64)))})
        values = g.forward(x, keep_all=True)
        for base in (None, tuple(None for _ in g.nodes)):
            intervals = crown(g, box, "y", base=base).intervals
            for i, iv in enumerate(intervals):
                if iv is None:
                    continue
                v = values[i].reshape(x.shape[0], -1)
                assert bool((iv[0].reshape(1, -1) <= v.min(0).values + 1e-9).all()), (seed, i)
                assert bool((iv[1].reshape(1, -1) >= v.max(0).values - 1e-9).all()), (seed, i)


@settings(max_examples=20, deadline=None, database=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(sorted(layer_kinds())),
    scale=st.sampled_from([0.3, 3.0]),
)
def test_kept_reach_sums_are_the_weights_own(seed: int, kind: str, scale: float) -> None:
    """The reach sums a form carries (from its concretisation, or its relaxation's input's) are the
    ``sum_n |w_n| max(|lo_n|, |hi_n|)`` of its weights (to 1e-12 relative, or above: the rounding margins
    read them), wherever the forward sweep uses one instead of computing it."""
    from gridverify.bounds import forward

    graph = random_graph(seed, depth=4, force=kind)
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(2, 3, generator=gen, dtype=torch.float64) * 2 - 1
    width = torch.rand(2, 3, generator=gen, dtype=torch.float64) * scale
    used: list[tuple[torch.Tensor, torch.Tensor]] = []
    own = forward.ForwardBounds._reach_sum

    def spy(self, w, known, rank):
        if known is not None:
            used.append((known, own(self, w, None, rank)))
        return own(self, w, known, rank)

    forward.ForwardBounds._reach_sum = spy
    try:
        _forward_intervals(graph, centre - width / 2, centre + width / 2)
    finally:
        forward.ForwardBounds._reach_sum = own
    for known, direct in used:
        known = known.expand_as(direct)
        assert (direct.isnan() | ~torch.isfinite(direct) | (known >= direct * (1 - 1e-12))).all()
    if kind == "relu":
        assert used  # the sweep did use kept sums

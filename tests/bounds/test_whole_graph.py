"""Whole-graph soundness: IBP, CROWN and alpha-CROWN contain every sampled output of random graphs that mix
every op (depth >= 4); CROWN is never looser than IBP, alpha-CROWN never looser than CROWN."""

import pytest
import torch

from gridverify.bounds import AlphaConfig, alpha_crown, crown, ibp
from tests.bounds.random_graphs import layer_kinds, random_box, random_graph, sample_box

KINDS = sorted(layer_kinds())
SLACK = 1e-9


def _sampled_range(graph, lower, upper, n=1500):
    pts = sample_box(lower, upper, n)
    ys = graph.forward(pts.reshape(-1, pts.shape[-1]))["y"].reshape(pts.shape[0], pts.shape[1], -1)
    return ys.amin(1), ys.amax(1)


def _assert_contains(result, lo, hi, what):
    assert torch.isfinite(lo).all() and torch.isfinite(hi).all()
    bad_lo = (result.lower > lo + SLACK * (1 + lo.abs())).nonzero()
    bad_hi = (result.upper < hi - SLACK * (1 + hi.abs())).nonzero()
    assert bad_lo.numel() == 0, f"{what} lower bound above a sampled output at {bad_lo.tolist()}"
    assert bad_hi.numel() == 0, f"{what} upper bound below a sampled output at {bad_hi.tolist()}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_bounds_contain_samples(kind: str, seed: int) -> None:
    graph = random_graph(seed * 101 + KINDS.index(kind), depth=5, force=kind)
    lower, upper = random_box(seed)
    lo, hi = _sampled_range(graph, lower, upper)
    r_ibp = ibp(graph, (lower, upper))
    r_crown = crown(graph, (lower, upper))
    r_alpha = alpha_crown(graph, (lower, upper), config=AlphaConfig(steps=8))
    for r in (r_ibp, r_crown, r_alpha):
        _assert_contains(r, lo, hi, r.method)
    _assert_no_looser(r_crown, r_ibp)
    _assert_no_looser(r_alpha, r_crown)


def _assert_no_looser(tight, loose, ulps=1e-12):
    """Never looser, up to the rounding of the offsets' outward margins (a few ulps)."""
    assert (tight.lower >= loose.lower - ulps * (1 + loose.lower.abs())).all()
    assert (tight.upper <= loose.upper + ulps * (1 + loose.upper.abs())).all()


def test_crown_beats_ibp_in_aggregate_on_random_graphs() -> None:
    widths = {"ibp": 0.0, "crown": 0.0}
    for seed in range(6):
        graph = random_graph(1000 + seed, depth=4)
        box = random_box(seed, batch=2)
        widths["ibp"] += float((lambda r: (r.upper - r.lower).sum())(ibp(graph, box)))
        widths["crown"] += float((lambda r: (r.upper - r.lower).sum())(crown(graph, box)))
    assert widths["crown"] < 0.9 * widths["ibp"], widths


def test_linear_bounds_hold_pointwise() -> None:
    """The linear forms w.r.t. the input bound the output at each sampled point, not just the box."""
    graph = random_graph(7, depth=4, force="sin")
    lower, upper = random_box(3)
    r = crown(graph, (lower, upper))
    pts = sample_box(lower, upper, 500)
    ys = graph.forward(pts.reshape(-1, 3))["y"].reshape(pts.shape[0], pts.shape[1], -1)
    lin = r.linear
    lo_lin = torch.einsum("bmn,bpn->bpm", lin.lower["x"], pts) + lin.lower_bias.unsqueeze(1)
    hi_lin = torch.einsum("bmn,bpn->bpm", lin.upper["x"], pts) + lin.upper_bias.unsqueeze(1)
    assert (lo_lin <= ys + SLACK).all() and (hi_lin >= ys - SLACK).all()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_bounds_contain_samples_many_graphs(seed: int) -> None:
    graph = random_graph(5000 + seed, depth=6)
    lower, upper = random_box(seed, batch=4)
    lo, hi = _sampled_range(graph, lower, upper, n=20000)
    for r in (crown(graph, (lower, upper)), alpha_crown(graph, (lower, upper))):
        _assert_contains(r, lo, hi, r.method)


@pytest.mark.parametrize("kind", ["sin", "mul", "sigmoid"])
def test_shared_intermediate_alphas_are_sound_and_no_looser_than_crown(kind: str) -> None:
    graph = random_graph(77 + KINDS.index(kind), depth=4, force=kind)
    lower, upper = random_box(5)
    lo, hi = _sampled_range(graph, lower, upper)
    r_crown = crown(graph, (lower, upper))
    r_shared = alpha_crown(graph, (lower, upper), config=AlphaConfig(steps=8, shared_intermediate=True))
    _assert_contains(r_shared, lo, hi, "shared alpha-crown")
    _assert_no_looser(r_shared, r_crown)

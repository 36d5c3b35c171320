"""`select_then`: the open domains less the split ones, then the children, in one copy: the same domains as
`concat([select(d, idx), more])`, field by field."""

import torch

from gridverify.bab import SearchConfig
from gridverify.bab.bound import BoundConfig, bound_domains
from gridverify.bab.domains import Domains, Problem, concat, select, select_then
from gridverify.bab.search import _root_domains
from gridverify.bab.split import split_inputs
from tests.bounds.random_graphs import random_graph

F64 = torch.float64


def _domains() -> tuple[Domains, Domains]:
    graph = random_graph(5, depth=3, n_in=3)
    box = (torch.full((1, 3), -1.0, dtype=F64), torch.full((1, 3), 1.0, dtype=F64))
    problem = Problem.make(graph, box)
    d, _ = _root_domains(
        problem, torch.randn(2, 3, generator=torch.Generator().manual_seed(0), dtype=F64), SearchConfig()
    )
    d = bound_domains(problem, d, BoundConfig(steps=1, refresh_intermediate=True)).domains
    for dim in range(3):
        d = split_inputs(d, torch.full((d.size,), dim), 0.5 * (d.lower[:, dim] + d.upper[:, dim]))
    more = bound_domains(problem, select(d, torch.tensor([1, 4, 6])), BoundConfig(steps=1)).domains
    return d, more


def _same(a: Domains, b: Domains) -> None:
    for name in Domains.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, dict):
            assert x.keys() == y.keys(), name
            for k in x:
                assert torch.equal(x[k], y[k]), (name, k)
        elif isinstance(x, tuple):
            for u, v in zip(x, y, strict=True):
                assert (u is None) == (v is None), name
                if u is not None:
                    assert torch.equal(u[0], v[0]) and torch.equal(u[1], v[1]), name
        elif x is None:
            assert y is None, name
        else:
            assert torch.equal(x, y), name


def test_select_then_is_concat_of_select() -> None:
    d, more = _domains()
    assert d.size == 16 and d.alpha and d.beta_lo
    for idx in ([0, 3, 15, 7], [2], list(range(16))):
        i = torch.tensor(idx)
        _same(select_then(d, i, more), concat([select(d, i), more]))
    assert select_then(d, torch.tensor([], dtype=torch.long), more) is more


def test_select_then_without_lines_drops_them() -> None:
    """A part without the last pass's lines (None) or coefficients: the result has none, as in concat."""
    d, more = _domains()
    bare = Domains(**{**more.__dict__, "input_coeff": None, "line_bound": None, "coeffs": {}})
    i = torch.tensor([1, 2])
    out = select_then(d, i, bare)
    assert out.input_coeff is None and out.line_bound is None and out.coeffs == {}
    _same(out, concat([select(d, i), bare]))

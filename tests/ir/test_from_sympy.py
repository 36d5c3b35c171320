"""The sympy front end: graphs compute what ``sympy.lambdify`` computes (float64, to 1e-12), expressions of
one shape share a handful of vector nodes however many there are, repeated subexpressions exist once,
constants fold, the builder's rewrites apply, the head lookup comes from the op registry, and everything
unsupported is reported in one error."""

import numpy as np
import pytest
import sympy
import torch

from gridverify.ir.from_sympy import UnsupportedSympyError, from_sympy, sympy_table
from gridverify.ir.graph import Graph
from gridverify.ops import REGISTRY

X = sympy.symbols("x0:4", real=True)


def _ops(graph: Graph) -> list[str]:
    return [n.op for n in graph.nodes]


def _assert_matches_lambdify(graph: Graph, outputs: dict, inputs: dict) -> None:
    """On 50 points uniform in [-1, 1]."""
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(-1.0, 1.0, (50, len(s))) for name, s in inputs.items()}
    got = graph.forward({n: torch.as_tensor(v) for n, v in feeds.items()})
    symbols = [s for syms in inputs.values() for s in syms]
    columns = [c for v in feeds.values() for c in v.T]
    for name, exprs in outputs.items():
        values = sympy.lambdify(symbols, list(exprs), "numpy")(*columns)
        want = np.stack([np.broadcast_to(np.asarray(v, dtype=float), (50,)) for v in values], axis=1)
        np.testing.assert_allclose(got[name].numpy(), want, rtol=1e-12, atol=1e-12, err_msg=name)


def test_lookup_table_is_derived_from_the_registry() -> None:
    heads = {h: op.name for op in REGISTRY.values() for h in op.sympy_heads}
    assert dict(sympy_table()) == heads
    assert {"Add", "Mul", "Pow", "sin", "cos"} <= set(heads)


def _branch_like(n: int, seed: int) -> tuple[dict, dict]:
    """``a_k vm_f^2 + b_k vm_f vm_t cos(va_f - va_t) + c_k vm_f vm_t sin(va_f - va_t)`` for n pairs."""
    rng = np.random.default_rng(seed)
    vm, va = sympy.symbols(f"vm0:{n}", real=True), sympy.symbols(f"va0:{n}", real=True)
    exprs = []
    for _ in range(n):
        f, t = rng.choice(n, 2, replace=False)
        a, b, c = rng.normal(size=3)
        vv, d = vm[f] * vm[t], va[f] - va[t]
        exprs.append(a * vm[f] ** 2 + b * vv * sympy.cos(d) + c * vv * sympy.sin(d))
    return {"flow": exprs}, {"vm": vm, "va": va}


def test_expressions_of_one_shape_become_a_few_vector_nodes() -> None:
    large_case = _branch_like(300, seed=1)
    small, large = from_sympy(*_branch_like(10, seed=0)), from_sympy(*large_case)
    assert len(large.nodes) == len(small.nodes) <= 16, (small.summary(), large.summary())
    _assert_matches_lambdify(large, *large_case)


def test_repeated_subexpressions_exist_once() -> None:
    """p and q of a branch share cos(va_f - va_t) and vm_f * vm_t: one cos, one sin, three products."""
    vm, va = X[:2], X[2:]
    vv, d = vm[0] * vm[1], va[0] - va[1]
    outputs = {
        "p": [2 * vv * sympy.cos(d) + 3 * vv * sympy.sin(d)],
        "q": [5 * vv * sympy.cos(d) - vv * sympy.sin(d)],
    }
    graph = from_sympy(outputs, {"vm": vm, "va": va})
    ops = _ops(graph)
    assert (ops.count("cos"), ops.count("sin"), ops.count("mul")) == (1, 1, 3), graph.summary()
    _assert_matches_lambdify(graph, outputs, {"vm": vm, "va": va})


@pytest.mark.parametrize(
    ("expr", "present", "absent"),
    [
        (X[0] * X[0], {"square"}, {"mul", "power"}),
        (X[0] / (X[1] + 2), {"reciprocal", "mul"}, {"power"}),
        ((X[0] + 2) ** -2, {"reciprocal", "square"}, {"power"}),
        (sympy.sqrt(X[0] + 2), {"sqrt"}, {"power"}),
        ((X[0] + 2) ** sympy.Rational(3, 2), {"sqrt", "power"}, set()),
        ((X[0] + X[1]) ** 3, {"power"}, {"mul"}),
    ],
)
def test_builder_rewrites_apply(expr: sympy.Expr, present: set[str], absent: set[str]) -> None:
    graph = from_sympy({"y": [expr]}, {"x": X})
    assert present <= set(_ops(graph)) and not absent & set(_ops(graph)), graph.summary()
    _assert_matches_lambdify(graph, {"y": [expr]}, {"x": X})


def test_constants_fold() -> None:
    p = sympy.Symbol("p")
    outputs = {"y": [sympy.cos(p) * X[0] + p, X[1] + X[1] - 2 * X[1] + X[2], sympy.pi + 1], "c": [sympy.E, 2]}
    graph = from_sympy(outputs, {"x": X}, params={p: 0.5})
    assert "cos" not in _ops(graph) and "mul" not in _ops(graph), graph.summary()
    got = graph.forward({"x": torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)})
    np.testing.assert_allclose(got["y"][0], [np.cos(0.5) + 0.5, 3.0, np.pi + 1], rtol=1e-15)
    np.testing.assert_allclose(got["c"][0], [np.e, 2.0], rtol=1e-15)
    assert graph.nodes[graph.output_ids["c"]].op == "const"


def test_unsupported_constructs_are_reported_at_once() -> None:
    outputs = {
        "a": [sympy.sec(X[0]) + sympy.atan2(X[1], X[0]), X[0] ** X[1]],
        "b": [sympy.Symbol("z"), X[0] ** 0.3],
    }
    with pytest.raises(UnsupportedSympyError) as info:
        from_sympy(outputs, {"x": X})
    text = str(info.value)
    assert len(info.value.problems) == 5, text
    for part in ("'sec'", "'atan2'", "non-constant exponent", "symbol 'z'", "exponent 0.3", "'b'[1]"):
        assert part in text, part


def test_a_symbol_in_two_inputs_is_an_error() -> None:
    with pytest.raises(ValueError, match="x0"):
        from_sympy({"y": [X[0]]}, {"u": X[:2], "v": X[:1]})


_UNARY = (
    sympy.sin,
    sympy.cos,
    sympy.tanh,
    lambda e: sympy.exp(e / 4),
    lambda e: sympy.log(1 + e**2),
    lambda e: sympy.sqrt(1 + e**2),
    lambda e: 1 / (2 + sympy.cos(e)),
    sympy.Abs,
    lambda e: e**3,
)


def _random_expr(rng: np.random.Generator, depth: int) -> sympy.Expr:
    if depth == 0:
        return X[rng.integers(4)] * float(rng.uniform(0.5, 1.5)) + float(rng.normal())
    pick = rng.integers(3)
    if pick == 0:
        return _UNARY[rng.integers(len(_UNARY))](_random_expr(rng, depth - 1))
    a, b = _random_expr(rng, depth - 1), _random_expr(rng, depth - 1)
    return a * b if pick == 1 else float(rng.normal()) * a - b


@pytest.mark.parametrize("seed", range(3))
def test_random_expressions_match_lambdify(seed: int) -> None:
    """Thirty random trees of depth <= 3 over every supported head, compiled together (shared groups)."""
    rng = np.random.default_rng(seed)
    exprs = [_random_expr(rng, int(rng.integers(1, 4))) for _ in range(30)]
    outputs = {"y": exprs, "z": [*exprs[:3], 1.5]}
    _assert_matches_lambdify(from_sympy(outputs, {"x": X}), outputs, {"x": X})

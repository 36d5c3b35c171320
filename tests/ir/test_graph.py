"""The IR: interning, validation, forward evaluation, rewrites, constant folding, fused-op lowering."""

import math

import pytest
import torch

from gridverify.const import Const
from gridverify.ir import Graph, GraphBuilder, GraphError, Node, lower_fused


def _mlp() -> tuple[GraphBuilder, Graph, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    w, bias = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    b = GraphBuilder()
    x = b.input("x", (3,))
    h = b.linear(x, w, bias)
    y = b.sigmoid(h) * 2.0 + b.sin(h) * b.cos(h) - h / 4.0
    return b, b.build({"y": y}), w, bias


def test_forward_matches_torch_in_float64() -> None:
    _, g, w, bias = _mlp()
    x = torch.randn(7, 3, dtype=torch.float64)
    h = x @ w.T + bias
    expected = torch.sigmoid(h) * 2 + torch.sin(h) * torch.cos(h) - h / 4
    got = g.forward(x)["y"]
    assert got.dtype == torch.float64
    assert torch.allclose(got, expected, atol=1e-14, rtol=0)


def test_identical_subexpressions_are_one_node() -> None:
    b = GraphBuilder()
    x = b.input("x", (2,))
    s1, s2 = b.sin(x + 1.0), b.sin(x + 1.0)
    assert s1.id == s2.id
    g = b.build(s1 * b.cos(x + 1.0))
    assert sum(n.op == "add" for n in g.nodes) == 1


def test_rewrites_square_scale_reciprocal_and_powers() -> None:
    b = GraphBuilder()
    x, z = b.input("x", (2,)), b.input("z", (2,))
    assert (x * x).node.op == "square"
    assert (x * 3.0).node.op == "scale" and (3.0 * x).node.op == "scale"
    q = x / z
    assert q.node.op == "mul" and b.nodes[q.node.inputs[1]].op == "reciprocal"
    assert (x / 2.0).node.op == "scale"
    assert (x**2).node.op == "square" and (x**3).node.op == "power" and (x**1).id == x.id
    assert (x**-2).node.op == "square" and b.nodes[(x**-2).node.inputs[0]].op == "reciprocal"


def test_constant_subgraphs_fold() -> None:
    b = GraphBuilder()
    x = b.input("x", (2,))
    c = b.sin(b.const([0.0, math.pi / 2])) * 2.0
    assert c.is_const
    assert torch.allclose(c.node.kwargs["value"].tensor, torch.tensor([0.0, 2.0], dtype=torch.float64))
    g = b.build(x + c)
    assert [n.op for n in g.nodes] == ["input", "const", "add"]


def test_build_drops_unused_nodes_and_keeps_inputs() -> None:
    b = GraphBuilder()
    x, unused = b.input("x", (2,)), b.input("u", (1,))
    b.tanh(x)
    g = b.build(b.relu(x))
    assert [n.op for n in g.nodes] == ["input", "input", "relu"]
    assert g.input_ids == {"x": 0, "u": 1} and unused.shape == (1,)


def test_indexing_concat_reshape_permute_match_torch() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    y = b.concat([x[:, 1:], b.permute(x, (1, 0))[:2]], axis=0)
    z = b.reshape(y, (8,))[[0, 5, 5, 7]]
    g = b.build({"y": y, "z": z})
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    ref_y = torch.cat([xs[:, :, 1:], xs.permute(0, 2, 1)[:, :2]], dim=1)
    out = g.forward(xs)
    assert torch.equal(out["y"], ref_y)
    assert torch.equal(out["z"], ref_y.reshape(5, 8)[:, [0, 5, 5, 7]])


def test_matmul_of_two_variables_lowers_to_mul_and_sum() -> None:
    b = GraphBuilder()
    x = b.input("x", (6,))
    p, q = b.reshape(b.tanh(x), (2, 3)), b.reshape(b.sin(x), (3, 2))
    g = b.build(p @ q)
    low = lower_fused(g)
    assert any(n.op == "matmul" for n in g.nodes) and not any(n.op == "matmul" for n in low.nodes)
    xs = torch.randn(9, 6, dtype=torch.float64)
    expected = torch.tanh(xs).reshape(9, 2, 3) @ torch.sin(xs).reshape(9, 3, 2)
    assert torch.allclose(g.forward(xs)["y"], expected, atol=1e-14)
    assert torch.allclose(low.forward(xs)["y"], expected, atol=1e-14)


def test_matmul_with_constant_becomes_linear() -> None:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    w = torch.randn(3, 4, dtype=torch.float64)
    m = torch.randn(5, 2, dtype=torch.float64)
    y1, y2 = x @ b.const(w), b.const(m) @ x
    assert y1.node.op == "linear"
    g = b.build({"a": y1, "b": y2})
    xs = torch.randn(4, 2, 3, dtype=torch.float64)
    out = g.forward(xs)
    assert torch.allclose(out["a"], xs @ w, atol=1e-14) and torch.allclose(out["b"], m @ xs, atol=1e-14)


def test_sparse_linear_matches_dense() -> None:
    w = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, -3.0]], dtype=torch.float64)
    b = GraphBuilder()
    x = b.input("x", (3,))
    g = b.build({"s": b.linear(x, w.to_sparse(), [1.0, 2.0]), "d": b.linear(x, w, [1.0, 2.0])})
    out = g.forward(torch.randn(5, 3, dtype=torch.float64))
    assert torch.allclose(out["s"], out["d"], atol=1e-14)


def test_validator_lists_every_broken_invariant() -> None:
    nodes = (
        Node("input", (), (2,), (("name", "x"), ("shape", (2,)))),
        Node("sigmoid", (2,), (2,)),  # input from a later node
        Node("tanh", (0,), (3,)),  # wrong shape
        Node("frobnicate", (0,), (2,)),  # unknown op
        Node("tanh", (0,), (3,)),  # duplicate
    )
    with pytest.raises(GraphError) as err:
        Graph(nodes, (("x", 0),), (("y", 9),))
    text = str(err.value)
    for fragment in [
        "not all earlier",
        "shape (3,) but its op gives (2,)",
        "unknown op 'frobnicate'",
        "duplicates node 2",
        "missing node 9",
    ]:
        assert fragment in text


def test_builder_rejects_bad_shapes_with_clear_errors() -> None:
    b = GraphBuilder()
    x = b.input("x", (3,))
    with pytest.raises(ValueError, match=r"needs input shape \(\.\.\., 4\)"):
        b.linear(x, torch.ones(2, 4))
    with pytest.raises(ValueError, match="declared twice"):
        b.input("x", (3,))
    with pytest.raises(ValueError, match="integer exponent"):
        x**0.5


def test_forward_rejects_wrong_input_shape() -> None:
    _, g, _, _ = _mlp()
    with pytest.raises(ValueError, match="needs shape"):
        g.forward(torch.zeros(2, 4))


def test_consts_are_immutable_and_hash_by_content() -> None:
    a, b = Const([1.0, 2.0]), Const(torch.tensor([1.0, 2.0], dtype=torch.float32))
    assert a == b and hash(a) == hash(b) and a != Const([1.0, 2.5])
    with pytest.raises(AttributeError):
        a.tensor = torch.zeros(2)  # type: ignore[misc]

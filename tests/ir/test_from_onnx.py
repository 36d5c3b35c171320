"""The ONNX front end: single-node models of every supported op type at opsets 13-20 (attributes vs inputs),
small chains that move the batch dim or do shape plumbing, and torch exports, each equal to onnxruntime in
float64 (to 1e-12); errors for invalid ONNX and every unsupported node named at once; the lookup table is
derived from the op registry. The ml4acopf models: see test_onnx_ml4acopf.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from gridverify.bounds import crown
from gridverify.ir.from_onnx import (
    OnnxFormatError,
    UnsupportedOnnxError,
    from_onnx,
    supported_op_types,
)
from gridverify.ir.onnx_ops import HANDLERS, onnx_table
from gridverify.ir.onnx_shape_ops import slice_range
from gridverify.ops import REGISTRY
from tests.ir.onnx_models import make_model, run_onnxruntime, single_node_model

TOL = 1e-12
W45 = np.arange(20.0).reshape(4, 5) / 10 - 1
BIG = 2**63 - 1  # torch's "to the end" in Slice


def _inputs(shape: tuple[int, ...], positive: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, shape) if positive else rng.normal(size=shape)


def assert_matches_onnxruntime(
    model: onnx.ModelProto, shape: tuple[int, ...], positive: bool = False
) -> None:
    """Every output of ``from_onnx(model)`` equals onnxruntime's on a random batch (batch first)."""
    graph = from_onnx(model)
    fixed = model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    x = _inputs(shape, positive)
    want = run_onnxruntime(model, {"x": x}, per_sample=fixed)
    got = graph.forward(torch.from_numpy(x))
    for out, w in zip(model.graph.output, want):
        assert got[out.name].shape == w.shape, out.name
        assert np.abs(got[out.name].numpy() - w).max() <= TOL * max(1.0, np.abs(w).max()), out.name


def _case(
    op: str,
    inputs: list[str],
    consts: dict[str, Any] | None = None,
    *,
    shape: tuple = ("N", 3, 4),
    opset: int = 13,
    outs: int = 1,
    positive: bool = False,
    tag: str = "",
    **attrs: Any,
) -> Any:
    return pytest.param(
        op, inputs, consts or {}, shape, opset, outs, positive, attrs, id=f"{op}{tag}-{opset}"
    )


SINGLE_NODE_CASES = [
    _case(
        "Gemm", ["x", "w", "c"], {"w": W45.T, "c": np.ones(5)}, shape=("N", 4), transB=1, alpha=0.5, beta=2.0
    ),
    _case("Gemm", ["x", "w", "c"], {"w": W45, "c": np.ones((1, 5))}, shape=("N", 4), tag="_noT"),
    _case("Gemm", ["x", "w"], {"w": W45}, shape=("N", 4), tag="_nobias", alpha=-2.0),
    _case("MatMul", ["x", "w"], {"w": W45}),
    _case("MatMul", ["x", "w"], {"w": W45[:, 0]}, tag="_vec"),
    _case("MatMul", ["a", "x"], {"a": W45.T[:, :3]}, tag="_left"),
    _case("MatMul", ["a", "x"], {"a": np.array([1.0, -2.0, 3.0])}, tag="_leftvec"),
    _case("Add", ["x", "c"], {"c": np.arange(4.0)}),
    _case("Add", ["c", "x"], {"c": np.arange(3.0).reshape(1, 3, 1)}, tag="_batch1"),
    _case("Sub", ["c", "x"], {"c": np.array(2.0)}),
    _case("Mul", ["x", "x"], tag="_self"),
    _case("Mul", ["c", "x"], {"c": np.arange(12.0).reshape(3, 4)}),
    _case("Div", ["x", "c"], {"c": np.array([1.0, 2.0, 4.0, -8.0])}),
    _case("Div", ["c", "x"], {"c": np.array(3.0)}, positive=True, tag="_recip"),
    *(_case(op, ["x"]) for op in ("Neg", "Exp", "Sin", "Cos", "Sigmoid", "Tanh", "Relu", "Floor", "Abs")),
    *(_case(op, ["x"], positive=True) for op in ("Sqrt", "Log", "Reciprocal")),
    *(_case("Pow", ["x", "e"], {"e": np.array(e)}, tag=f"_{e}") for e in (0.0, 1.0, 2.0, 3.0, -1.0, -2.0)),
    *(_case("Pow", ["x", "e"], {"e": np.array(e)}, positive=True, tag=f"_{e}") for e in (0.5, -0.5)),
    _case("Clip", ["x", "lo", "hi"], {"lo": np.array(-0.5), "hi": np.array(0.7)}),
    _case("Clip", ["x", "lo"], {"lo": np.array(0.0)}, tag="_relu"),
    _case("Clip", ["x", "", "hi"], {"hi": np.array(0.2)}, tag="_hi"),
    _case("Gather", ["x", "i"], {"i": np.array([2, 0, -1])}, axis=1),
    _case("Gather", ["x", "i"], {"i": np.array(1)}, axis=2, tag="_scalar"),
    _case("Gather", ["x", "i"], {"i": np.array([[3, 0], [1, 1]])}, axis=-1, tag="_2d"),
    _case("Slice", ["x", "s", "e", "a"], {"s": np.array([1]), "e": np.array([BIG]), "a": np.array([2])}),
    _case(
        "Slice",
        ["x", "s", "e", "a", "st"],
        {"s": np.array([-1, 0]), "e": np.array([-BIG, 3]), "a": np.array([2, 1]), "st": np.array([-2, 2])},
        tag="_steps",
    ),
    _case(
        "Slice",
        ["x", "s", "e", "a"],
        {"s": np.array([0, 1]), "e": np.array([BIG, 3]), "a": np.array([0, -1])},
        tag="_batch_whole",
    ),
    _case("Concat", ["x", "x"], axis=2),
    _case(
        "Concat",
        ["c", "x", "d"],
        {"c": np.ones((1, 2, 4)), "d": np.full((1, 1, 4), 7.0)},
        shape=(1, 3, 4),
        axis=1,
        tag="_const",
    ),
    _case("Split", ["x", "s"], {"s": np.array([1, 3])}, outs=2, axis=2),
    _case("Split", ["x"], outs=3, axis=1, tag="_equal"),
    _case("Split", ["x"], opset=18, outs=2, axis=1, num_outputs=2, tag="_uneven"),
    _case("Reshape", ["x", "s"], {"s": np.array([0, -1])}),
    _case("Reshape", ["x", "s"], {"s": np.array([0, 2, 1, 6])}, tag="_4d"),
    _case("Reshape", ["x", "s"], {"s": np.array([1, 2, 6])}, shape=(1, 3, 4), tag="_fixed"),
    _case("Flatten", ["x"], axis=1),
    _case("Flatten", ["x"], axis=0, shape=(1, 3, 4), tag="_fixed"),
    _case("Squeeze", ["x", "a"], {"a": np.array([2])}, shape=("N", 3, 1)),
    _case("Unsqueeze", ["x", "a"], {"a": np.array([1, -1])}),
    _case("Transpose", ["x"], perm=[0, 2, 1]),
    _case("Expand", ["x", "s"], {"s": np.array([1, 3, 4])}, shape=("N", 1, 4)),
    _case("Where", ["m", "x", "c"], {"m": np.array([True, False, False, True]), "c": np.arange(4.0)}),
    _case("Where", ["m", "c", "x"], {"m": np.array([[True], [False], [True]]), "c": np.array(5.0)}, tag="_c"),
    _case("Where", ["m", "x", "x"], {"m": np.eye(3, 4, dtype=bool)}, tag="_same"),
    _case("Cast", ["x"], to=onnx.TensorProto.DOUBLE),
    _case("Identity", ["x"]),
    _case("ReduceSum", ["x", "a"], {"a": np.array([1])}),
    _case("ReduceSum", ["x", "a"], {"a": np.array([-1, 1])}, keepdims=0, tag="_drop"),
    _case("ReduceSum", ["x"], noop_with_empty_axes=1, tag="_noop"),
    _case("ReduceMean", ["x"], axes=[2], keepdims=0),
    _case("ReduceMean", ["x", "a"], {"a": np.array([1])}, opset=18, tag="_input"),
    _case("Softmax", ["x"], axis=-1),
    _case("Softmax", ["x"], axis=1, tag="_axis1"),
    _case("Softmax", ["x"], axis=1, opset=12, tag="_coerced"),
]


@pytest.mark.parametrize(
    ("op", "inputs", "consts", "shape", "opset", "outs", "positive", "attrs"), SINGLE_NODE_CASES
)
def test_single_node_matches_onnxruntime(
    op: str, inputs: list[str], consts: dict, shape: tuple, opset: int, outs: int, positive: bool, attrs: dict
) -> None:
    model = single_node_model(op, shape, consts, inputs, opset, outs, **attrs)
    assert_matches_onnxruntime(model, tuple(5 if s == "N" else s for s in shape), positive)


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_batch_moves_through_transpose_and_matmul(opset: int) -> None:
    """The ml4acopf pattern: ``Transpose(x) -> MatMul(A, .) -> Transpose``, then a Gemm with transA."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
        helper.make_node("MatMul", ["a", "t"], ["m"]),
        helper.make_node("Sin", ["m"], ["s"]),
        helper.make_node("Add", ["s", "col"], ["u"]),
        helper.make_node("Gemm", ["u", "w"], ["g"], transA=1),
        helper.make_node("Transpose", ["u"], ["y"], perm=[1, 0]),
    ]
    consts = {"a": W45, "col": np.arange(4.0).reshape(4, 1), "w": W45}
    model = make_model(nodes, ("N", 5), consts, opset, outputs=("y", "g"))
    assert_matches_onnxruntime(model, (6, 5))


def test_matmul_of_two_traced_tensors() -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["x", "t"], ["y"]),
    ]
    assert_matches_onnxruntime(make_model(nodes, ("N", 2, 3, 4), {}, 17), (4, 2, 3, 4))


@pytest.mark.parametrize("opset", [13, 15, 18])
def test_shape_plumbing_on_constants_folds(opset: int) -> None:
    """Shape / Gather / Unsqueeze / Concat -> Reshape, and torch's expand(1, -1) pattern (ConstantOfShape,
    Mul, Equal, Where, Expand, Cast), all on constants, are evaluated at conversion."""
    one = helper.make_tensor("one", onnx.TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("ConstantOfShape", ["two"], ["ones"], value=one),
        helper.make_node("Mul", ["ones", "minus1s"], ["neg"]),
        helper.make_node("Equal", ["pattern", "neg"], ["eq"]),
        helper.make_node("Where", ["eq", "ones", "pattern"], ["shape2"]),
        helper.make_node("Expand", ["row", "shape2"], ["rowx"]),
        helper.make_node("Cast", ["rowx"], ["rowd"], to=onnx.TensorProto.DOUBLE),
        helper.make_node("Sub", ["flat", "rowd"], ["y"]),
    ]
    consts = {
        "zero": np.array(0), "axes0": np.array([0]), "minus1": np.array([-1]), "two": np.array([2]),
        "minus1s": np.array(-1), "pattern": np.array([1, -1]), "row": np.arange(12, dtype=np.float32),
    }  # fmt: skip
    model = make_model(nodes, ("N", 3, 4), consts, opset)
    graph = from_onnx(model)
    assert {n.op for n in graph.nodes} == {"input", "reshape", "sub", "const"}
    assert_matches_onnxruntime(model, (3, 3, 4))


class _ManyOps(torch.nn.Module):
    """A torch module touching most supported op types, for the exporter's own spelling of them."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(6, 8).double()
        self.register_buffer("mask", torch.tensor([True, False, True, True]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.lin(x))
        a, b = h.split([3, 5], dim=1)
        c = torch.cat([torch.sigmoid(a), torch.tanh(b)], 1)
        d = c.view(c.size(0), 2, 4).transpose(1, 2).sum(dim=2)
        e = (
            torch.sin(d) * torch.cos(d)
            + torch.exp(-d.abs())
            + torch.sqrt(d * d + 1)
            + torch.log(d.clamp(min=0) + 1)
        )
        g = torch.where(self.mask, e, -e)
        g = g**2 + torch.floor(g) / 3 - g**3 + x[:, 1:5].flatten(1)
        return torch.cat(
            [torch.softmax(g, dim=-1), g.unsqueeze(1).squeeze(1), g[:, [0, 2]] @ torch.ones(2, 3).double()], 1
        )


def _export(module: torch.nn.Module, x: torch.Tensor, opset: int, path: Path) -> onnx.ModelProto:
    """torch's legacy exporter (the dynamo one needs onnxscript), dynamic batch, shape plumbing kept."""
    with pytest.warns(DeprecationWarning):
        torch.onnx.export(
            module,
            (x[:1],),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}},
            do_constant_folding=False,
        )
    return onnx.load(str(path))


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_torch_export_matches_module_and_onnxruntime(opset: int, tmp_path: Path) -> None:
    module, x = _ManyOps().eval(), torch.randn(7, 6, dtype=torch.float64)
    model = _export(module, x, opset, tmp_path / "many.onnx")
    assert {"Shape", "Split", "Softmax", "Where"} <= {n.op_type for n in model.graph.node}
    assert_matches_onnxruntime(model, (7, 6))
    got = from_onnx(tmp_path / "many.onnx").forward(x)["y"]
    assert (got - module(x)).abs().max() <= TOL


def test_crown_bounds_an_exported_model(tmp_path: Path) -> None:
    """Every op the front end emits has bounds: CROWN over a box contains 5000 sampled outputs."""
    x = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    graph = from_onnx(_export(_ManyOps().eval(), x, 17, tmp_path / "many.onnx"))
    result = crown(graph, (x - 0.05, x + 0.05))
    samples = graph.forward(x - 0.05 + 0.1 * torch.rand(5000, 6, dtype=torch.float64))["y"]
    assert bool(((samples >= result.lower) & (samples <= result.upper)).all())


# -- errors -------------------------------------------------------------------------------------------------
def _pool_and_lstm() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["c"], name="pool1", kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Reshape", ["f", "seq"], ["s"]),
        helper.make_node("LSTM", ["s", "w", "r"], ["h"], name="lstm1", hidden_size=2),
        helper.make_node("Relu", ["x"], ["y"], name="fine"),
    ]
    consts = {
        "seq": np.array([1, 1, 9]),
        "w": np.ones((1, 8, 9)),
        "r": np.ones((1, 8, 2)),
    }
    return make_model(nodes, (1, 1, 4, 4), consts, 17, outputs=("y", "h"))


def test_unsupported_ops_are_named_together() -> None:
    with pytest.raises(UnsupportedOnnxError) as info:
        from_onnx(_pool_and_lstm())
    assert info.value.op_types == ("LSTM", "MaxPool")
    assert "MaxPool at node 'pool1'" in str(info.value) and "LSTM at node 'lstm1'" in str(info.value)


def test_unknown_op_type_is_unsupported_not_malformed() -> None:
    model = _pool_and_lstm()
    model.graph.node[4].op_type = "FrobnicateV2"
    with pytest.raises(
        UnsupportedOnnxError, match=r"FrobnicateV2 at node 'fine' \(no such ONNX op\)"
    ) as info:
        from_onnx(model)
    assert info.value.op_types == ("FrobnicateV2", "LSTM", "MaxPool")


def test_unsupported_configurations_are_named_together() -> None:
    nodes = [
        helper.make_node("Reshape", ["x", "flat"], ["a"], name="merge_batch"),
        helper.make_node("ReduceSum", ["x"], ["b"], name="sum_all"),
        helper.make_node("Gather", ["x", "i"], ["c"], name="pick_sample", axis=0),
        helper.make_node("Pow", ["x", "e"], ["d"], name="cube_root"),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    consts = {"flat": np.array([-1]), "i": np.array([0]), "e": np.array(1 / 3)}
    model = make_model(nodes, ("N", 3), consts, 17, outputs=("y", "a", "b", "c", "d"))
    with pytest.raises(UnsupportedOnnxError) as info:
        from_onnx(model)
    wheres = [where for _, where, _ in info.value.problems]
    assert wheres == ["node 'merge_batch'", "node 'sum_all'", "node 'pick_sample'", "node 'cube_root'"]
    assert "mixes the batch" in str(info.value) and "exponent 0.333" in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "not a readable ONNX model|invalid ONNX model"),
        (lambda b: b"\x08\x07garbage\xff\xfe" * 10, "not a readable ONNX model|invalid ONNX model"),
        (lambda b: b"", "no graph outputs"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_unreadable_files(tmp_path: Path, damage: Any, message: str) -> None:
    good = single_node_model("Gemm", ("N", 4), {"w": W45}, ["x", "w"], 17).SerializeToString()
    path = tmp_path / "bad.onnx"
    path.write_bytes(damage(good))
    with pytest.raises(OnnxFormatError, match=message):
        from_onnx(path)


def test_missing_initializer_and_dangling_output() -> None:
    model = single_node_model("Gemm", ("N", 4), {}, ["x", "w"], 17)
    model.graph.output.append(helper.make_empty_tensor_value_info("ghost"))
    with pytest.raises(OnnxFormatError) as info:
        from_onnx(model)
    assert "node 'the_gemm' (Gemm): input 'w' is no graph input, initializer" in str(info.value)
    assert "graph output 'ghost' is produced by no node" in str(info.value)


def test_checker_failures_and_bad_shapes() -> None:
    bad_attr = single_node_model("Relu", ("N", 4), {}, ["x"], 17, colour=3)
    with pytest.raises(OnnxFormatError, match=r"onnx.checker rejects the model.*colour"):
        from_onnx(bad_attr)
    bad_shape = single_node_model("MatMul", ("N", 3), {"w": W45}, ["x", "w"], 17)
    with pytest.raises(OnnxFormatError, match=r"node 'the_matmul' \(MatMul\)"):
        from_onnx(bad_shape)


def test_integer_inputs_are_unsupported() -> None:
    model = single_node_model("Relu", ("N", 4), {}, ["x"], 17)
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.INT64
    with pytest.raises(UnsupportedOnnxError, match="element type INT64"):
        from_onnx(model)


# -- tables ----------------------------------------------------------------------------------------------
# fmt: off
REQUIRED = [
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Pow", "Sqrt", "Exp", "Log", "Sin", "Cos",
    "Sigmoid", "Tanh", "Relu", "Clip", "Floor", "Abs", "Gather", "Slice", "Concat", "Split", "Reshape",
    "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Expand", "Where", "Cast", "Identity", "ReduceSum",
    "Softmax",
]
# fmt: on


def test_lookup_is_derived_from_the_registry() -> None:
    table = onnx_table()
    assert {t for op in REGISTRY.values() for t in op.onnx_types} == set(table)
    assert set(REQUIRED) <= supported_op_types()
    for onnx_type, name in table.items():  # types without a handler are parameter-free unary ops
        if onnx_type not in HANDLERS:
            assert REGISTRY[name].arity == 1 and REGISTRY[name].sample_params == ({},), onnx_type


def test_a_registered_type_without_handler_is_elementwise() -> None:
    model = single_node_model("Reciprocal", ("N", 2), {}, ["x"], 17)
    assert [n.op for n in from_onnx(model).nodes] == ["input", "reciprocal"]


def test_large_sparse_weights_are_stored_sparse() -> None:
    a = np.eye(80)
    model = single_node_model("MatMul", ("N", 80), {"a": a}, ["x", "a"], 17)
    (linear,) = [n for n in from_onnx(model).nodes if n.op == "linear"]
    assert linear.kwargs["weight"].is_sparse
    (linear,) = [n for n in from_onnx(model, sparse_density=0.0).nodes if n.op == "linear"]
    assert not linear.kwargs["weight"].is_sparse


def test_slice_range_is_onnx_slicing() -> None:
    """Against onnxruntime (ONNX's reference Slice uses Python slicing, which clamps differently)."""
    ends = (-BIG, -7, -2, -1, 0, 1, 3, 9, BIG)
    for dim in (1, 5):
        for step in (1, 2, -1, -3):
            node = helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])
            model = make_model([node], ("N", dim), {"a": np.array([1]), "st": np.array([step])}, 17)
            model.graph.input.extend(
                helper.make_tensor_value_info(k, onnx.TensorProto.INT64, [1]) for k in "se"
            )
            del model.graph.initializer[:0]
            for start in ends:
                for end in ends:
                    feeds = {"x": np.arange(float(dim))[None], "s": np.array([start]), "e": np.array([end])}
                    (want,) = run_onnxruntime(model, feeds, per_sample=False)
                    got = slice_range(dim, start, end, step).tolist()
                    assert got == want[0].tolist(), (dim, step, start, end)


def test_constant_slices_fold_as_onnxruntime_computes() -> None:
    nodes = [
        helper.make_node("Slice", ["c", "s", "e", "a", "st"], ["k"]),
        helper.make_node("Add", ["x", "k"], ["y"]),
    ]
    consts = {"c": np.arange(5.0), "s": np.array([-BIG]), "e": np.array([-BIG]), "a": np.array([0]),
              "st": np.array([-1])}  # fmt: skip
    assert_matches_onnxruntime(make_model(nodes, ("N", 1), consts, 17), (3, 1))


def test_squeeze_without_axes_keeps_the_batch_dim() -> None:
    model = single_node_model("Squeeze", (1, 1, 3, 1), {}, ["x"], 13)
    x = torch.randn(4, 1, 3, 1, dtype=torch.float64)
    assert torch.equal(from_onnx(model).forward(x)["y0"], x.reshape(4, 3))


def test_expand_to_higher_rank_moves_the_batch_dim() -> None:
    """``(N, 3, 4) -> (2, N, 3, 4)``: the batch dim ends up second; a Transpose brings it back."""
    nodes = [
        helper.make_node("Expand", ["x", "s"], ["e"]),
        helper.make_node("Transpose", ["e"], ["y"], perm=[1, 0, 2, 3]),
    ]
    assert_matches_onnxruntime(make_model(nodes, ("N", 3, 4), {"s": np.array([2, 1, 3, 4])}, 17), (5, 3, 4))


def test_gelu_is_the_exact_erf_form() -> None:
    """onnxruntime has no float64 Gelu; compare with torch's."""
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    got = from_onnx(single_node_model("Gelu", ("N", 3, 4), {}, ["x"], 20)).forward(x)["y0"]
    assert (got - torch.nn.functional.gelu(x)).abs().max() <= TOL
    with pytest.raises(UnsupportedOnnxError, match="approximate='tanh'"):
        from_onnx(single_node_model("Gelu", ("N", 3), {}, ["x"], 20, approximate="tanh"))

"""ONNX models for the front-end tests: single nodes built with onnx.helper, a float64 copy of a model, and
onnxruntime as the reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

F32, F64 = TensorProto.FLOAT, TensorProto.DOUBLE


def make_model(
    nodes: Sequence[onnx.NodeProto],
    input_shape: Sequence[int | str],
    constants: Mapping[str, Any],
    opset: int,
    outputs: Sequence[str] = ("y",),
) -> onnx.ModelProto:
    """A float64 model of ``nodes`` with input ``x`` (``input_shape``, first dim the batch) and initializers
    ``constants``."""
    inits = [numpy_helper.from_array(np.asarray(v), name=k) for k, v in constants.items()]
    graph = helper.make_graph(
        list(nodes),
        "test_model",
        [helper.make_tensor_value_info("x", F64, list(input_shape))],
        [helper.make_tensor_value_info(o, F64, None) for o in outputs],
        inits,
    )
    return _typed_outputs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _typed_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Output types from ONNX's shape inference where it finds them (onnx.checker wants a type)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except onnx.shape_inference.InferenceError:
        inferred = model
    types = {v.name: v.type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    for out in model.graph.output:
        if out.name in types and types[out.name].tensor_type.HasField("shape"):
            out.type.CopyFrom(types[out.name])
        else:
            out.type.tensor_type.shape.SetInParent()  # unknown: declared a scalar
    return model


def single_node_model(
    op_type: str,
    input_shape: Sequence[int | str],
    constants: Mapping[str, Any],
    inputs: Sequence[str],
    opset: int,
    n_outputs: int = 1,
    **attrs: Any,
) -> onnx.ModelProto:
    """A model of one node; ``inputs`` names its inputs in order (``x``, constants, '' for absent ones)."""
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, list(inputs), outs, name=f"the_{op_type.lower()}", **attrs)
    return make_model([node], input_shape, constants, opset, outs)


def _double_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    if t.data_type != F32:
        return t
    return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)


def to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` computing in float64: float32 initializers, constants, casts and I/O widened."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = [_double_tensor(t) for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(inits)
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(_double_tensor(a.t))
            elif node.op_type == "Cast" and a.name == "to" and a.i == F32:
                a.i = F64
    for v in (*g.input, *g.output):
        if v.type.tensor_type.elem_type == F32:
            v.type.tensor_type.elem_type = F64
    del g.value_info[:]
    return m


def run_onnxruntime(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], per_sample: bool
) -> list[np.ndarray]:
    """Outputs of ``model``; ``per_sample`` runs a fixed-batch-1 model once per row and stacks."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    if not per_sample:
        return session.run(None, dict(feeds))
    n = len(next(iter(feeds.values())))
    rows = [session.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[j] for r in rows]) for j in range(len(rows[0]))]

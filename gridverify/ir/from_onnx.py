"""ONNX front end: `from_onnx` reads an ONNX model and rebuilds it with `GraphBuilder`.

Batch convention: the IR's shapes leave out the batch dim. The first dim of each model input is its batch
dim, symbolic (``N``) or fixed: VNN-COMP models often declare a batch of 1, and that dim is treated as the
batch all the same, so the graph computes the model per sample, ``graph(x)[n] = model(x[n : n + 1])``. In
shape arithmetic (``Shape``, ``Reshape`` targets, ``Expand``) the batch dim has its declared size (1 when
symbolic). The batch dim may move inside the model (``Transpose``, then ``MatMul`` by a constant, then
``Transpose`` back): its position is tracked, and a node that would mix it with other axes, reduce over
it, index into it or broadcast a constant along it is unsupported. Graph outputs are batch first,
``(N, *S)`` with ``S`` the ONNX output shape less its batch dim in ONNX's order, so for a batch of 1 the
flat order of ``S`` is the order in which VNN-LIB's ``Y_j`` count the outputs.

Constants: initializers and ``Constant`` nodes are numpy arrays. A node whose inputs are all constant is
evaluated at conversion by ONNX's reference implementation (numpy), so shape plumbing on constants
(``Shape``, ``ConstantOfShape``, ``Equal``, ``Where``, ``Expand``, ``Cast``, ``Range``, ...) folds away
whatever its op type; only control flow and random ops are never folded.

Lookup: `onnx_table` maps ONNX op types to registered ops, derived from each op's ``onnx_types`` in
`REGISTRY`; `HANDLERS` translate node arguments into builder calls (a registered op type without a handler
is applied elementwise). `supported_op_types` lists what a traced tensor may flow through.

Errors: `OnnxFormatError` for a model that is not valid ONNX (unreadable bytes, references to values that
do not exist, onnx.checker failures), saying what and where; `UnsupportedOnnxError` listing every node the
front end cannot translate (op type, node name and reason), all at once.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from gridverify.ir.builder import GraphBuilder, Var
from gridverify.ir.graph import Graph
from gridverify.ir.onnx_ops import (
    HANDLERS,
    OnnxContext,
    OnnxNode,
    Traced,
    Unsupported,
    elementwise,
    onnx_table,
)
from gridverify.ir.onnx_shape_ops import FOLDERS

__all__ = ["OnnxFormatError", "UnsupportedOnnxError", "from_onnx", "load_model", "supported_op_types"]

_TABLE = onnx_table()
_FLOAT_INPUTS = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16
_NEVER_FOLD = frozenset(
    {
        "If",
        "Loop",
        "Scan",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
_MISSING = object()  # value of a node that could not be converted


class OnnxFormatError(ValueError):
    """The model is not valid ONNX: unreadable, referring to values that do not exist, or rejected by
    onnx.checker. The message says what and where."""


class UnsupportedOnnxError(ValueError):
    """Nodes the front end cannot translate, each as ``(op type, where, reason)``."""

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(f"{op} at {where}" + (f" ({why})" if why else "") for op, where, why in problems)
        super().__init__(f"unsupported ONNX operations ({len(self.problems)}): {listed}")

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(sorted({op for op, _, _ in self.problems}))


def supported_op_types() -> frozenset[str]:
    """ONNX op types a traced tensor may flow through (any op type folds when its inputs are constant)."""
    return frozenset(_TABLE) | frozenset(HANDLERS)


# -- loading and checking ---------------------------------------------------------------------------------
def load_model(model: str | Path | bytes | onnx.ModelProto) -> onnx.ModelProto:
    """Read and check a model; `OnnxFormatError` if it is unreadable or invalid ONNX."""
    proto = model if isinstance(model, onnx.ModelProto) else _read(model)
    _check_references(proto.graph)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        unknown = [n for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain)]
        if unknown:
            raise UnsupportedOnnxError(_unsupported_types(proto.graph)) from err
        raise OnnxFormatError(f"onnx.checker rejects the model: {err}") from err
    return proto


def _read(model: str | Path | bytes) -> onnx.ModelProto:
    """The model in a file (gzip-compressed or not: benchmarks ship ``.onnx.gz``) or in bytes."""
    what = "the given bytes" if isinstance(model, bytes) else repr(str(model))
    try:
        if not isinstance(model, bytes) and _is_gzip(Path(model)):
            with gzip.open(model, "rb") as f:
                model = f.read()
        return onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise OnnxFormatError(f"{what}: corrupt gzip data ({err})") from err
    except OSError:
        raise
    except Exception as err:  # protobuf's DecodeError and friends
        raise OnnxFormatError(f"{what} is not a readable ONNX model ({type(err).__name__}: {err})") from err


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _where(index: int, node: onnx.NodeProto) -> str:
    if node.name:
        return f"node {node.name!r}"
    return f"node #{index} (output {node.output[0]!r})" if node.output else f"node #{index}"


def _check_references(graph: onnx.GraphProto) -> None:
    """Every node input and graph output must be a graph input, an initializer or an earlier output."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer}
    problems = []
    for i, node in enumerate(graph.node):
        problems += [
            f"{_where(i, node)} ({node.op_type}): input {name!r} is no graph input, initializer or output "
            "of an earlier node (a missing initializer, or nodes out of order?)"
            for name in node.input
            if name and name not in known
        ]
        known |= set(node.output)
    problems += [
        f"graph output {o.name!r} is produced by no node" for o in graph.output if o.name not in known
    ]
    if not graph.output:
        problems.append("the model has no graph outputs (an empty or truncated file?)")
    if problems:
        raise OnnxFormatError("invalid ONNX model:\n  " + "\n  ".join(problems))


def _unknown(node: onnx.NodeProto) -> str:
    """The reason given for an op type without translation: none, unless ONNX itself does not know it."""
    return "" if onnx.defs.has(node.op_type, node.domain) else "no such ONNX op"


def _unsupported_types(graph: onnx.GraphProto) -> list[tuple[str, str, str]]:
    supported = supported_op_types()
    return [
        (n.op_type, _where(i, n), _unknown(n))
        for i, n in enumerate(graph.node)
        if n.op_type not in supported or n.domain not in ("", "ai.onnx")
    ]


# -- conversion -------------------------------------------------------------------------------------------
def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


def _initializer(tensor: onnx.TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except Exception as err:  # external data not found, bad raw bytes, ...
        raise OnnxFormatError(
            f"initializer {tensor.name!r} cannot be read ({type(err).__name__}: {err})"
        ) from err


def _opset(proto: onnx.ModelProto) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return versions[0] if versions else 1


class _Converter:
    """One pass over the nodes: ONNX value name -> `Traced`, numpy constant, or ``_MISSING``."""

    def __init__(self, proto: onnx.ModelProto, sparse_density: float) -> None:
        graph = proto.graph
        self.graph, self.opset = graph, _opset(proto)
        self.env: dict[str, Any] = {t.name: _initializer(t) for t in graph.initializer}
        self.problems: list[tuple[str, str, str]] = []
        inputs = [v for v in graph.input if v.name not in self.env]
        self.ctx = OnnxContext(GraphBuilder(), _batch_size(inputs), self.opset, sparse_density)
        for v in inputs:
            self.env[v.name] = self._input(v)

    def run(self) -> Graph:
        for i, node in enumerate(self.graph.node):
            self._node(i, node)
        outputs = {o.name: self._output(o.name) for o in self.graph.output}
        if self.problems:
            raise UnsupportedOnnxError(self.problems)
        # an output is None only where a problem was recorded
        return self.ctx.builder.build({k: v for k, v in outputs.items() if v is not None})

    def _input(self, value: onnx.ValueInfoProto) -> Any:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if tensor.elem_type not in _FLOAT_INPUTS:
            why = f"element type {onnx.TensorProto.DataType.Name(tensor.elem_type)} (floats only)"
        elif not dims or any(d is None or d <= 0 for d in dims[1:]):
            why = f"shape {dims}: needs a batch dim then fixed sizes"
        else:
            return Traced(self.ctx.builder.input(value.name, [d for d in dims[1:] if d is not None]), 0)
        self.problems.append(("graph input", repr(value.name), why))
        return _MISSING

    def _node(self, index: int, node: onnx.NodeProto) -> None:
        """Convert one node; a node fed by a failed one is skipped, unless its op type is unsupported."""
        inputs = [self.env[name] if name else None for name in node.input]
        values: Any = _MISSING
        try:
            if all(v is not _MISSING for v in inputs):
                values = self._convert(node, inputs)
            elif node.op_type not in supported_op_types():
                raise Unsupported(_unknown(node))
        except Unsupported as err:
            self.problems.append((node.op_type, _where(index, node), str(err)))
        except (ValueError, IndexError) as err:
            raise OnnxFormatError(f"{_where(index, node)} ({node.op_type}): {err}") from err
        values = values if isinstance(values, tuple) else (values,) * len(node.output)
        self.env.update(zip(node.output, values))

    def _convert(self, node: onnx.NodeProto, inputs: list[Any]) -> Any:
        if node.domain not in ("", "ai.onnx"):
            raise Unsupported(f"domain {node.domain!r}")
        if node.op_type in _NEVER_FOLD:
            raise Unsupported("control flow and random ops are not translated")
        info = OnnxNode(node.op_type, node.name, _attributes(node), len(node.output))
        if not any(isinstance(v, Traced) for v in inputs):
            return self._fold(node, info, inputs)
        handler = HANDLERS.get(node.op_type)
        if handler is None and node.op_type in _TABLE:
            handler = functools.partial(elementwise, _TABLE[node.op_type])
        if handler is None:
            raise Unsupported(_unknown(node))
        while inputs and inputs[-1] is None:
            inputs.pop()
        try:
            inspect.signature(handler).bind(self.ctx, info, *inputs)
        except TypeError as err:
            raise ValueError(f"{len(inputs)} inputs do not fit: {err}") from None
        return handler(self.ctx, info, *inputs)

    def _fold(self, node: onnx.NodeProto, info: OnnxNode, inputs: list[Any]) -> tuple[np.ndarray, ...]:
        """Evaluate a node on constants, with ONNX's reference implementation unless `FOLDERS` has one."""
        try:
            if node.op_type in FOLDERS:
                return FOLDERS[node.op_type](info, *inputs)
            feeds = {name: v for name, v in zip(node.input, inputs) if name}
            return tuple(ReferenceEvaluator(node, opsets={"": self.opset}).run(None, feeds))
        except Unsupported:
            raise
        except Exception as err:  # the reference ops raise anything on bad arguments
            raise ValueError(f"evaluating it on constants failed ({type(err).__name__}: {err})") from err

    def _output(self, name: str) -> Var | None:
        value = self.env[name]
        if isinstance(value, Traced) or value is _MISSING:
            return value.var if isinstance(value, Traced) else None
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim == 0 or arr.shape[0] != self.ctx.batch_size:
            self.problems.append(
                ("graph output", repr(name), f"a constant of shape {arr.shape}, no batch dim")
            )
            return None
        return self.ctx.builder.const(arr[0])


def _batch_size(inputs: Sequence[onnx.ValueInfoProto]) -> int:
    dims = [v.type.tensor_type.shape.dim for v in inputs if v.type.tensor_type.shape.dim]
    return int(dims[0][0].dim_value) if dims and dims[0][0].dim_value > 0 else 1


def from_onnx(model: str | Path | bytes | onnx.ModelProto, *, sparse_density: float = 0.1) -> Graph:
    """The `Graph` of an ONNX model (a path, its bytes, or a ``ModelProto``); see the module docstring.

    Inputs and outputs keep their ONNX names; the graph computes the model per sample, batch first.
    Constant matrices of linear maps with at most ``sparse_density`` nonzeros (and at least 4096 entries)
    are stored sparse. Raises `OnnxFormatError` for invalid ONNX and `UnsupportedOnnxError` listing every
    untranslatable node.
    """
    return _Converter(load_model(model), sparse_density).run()

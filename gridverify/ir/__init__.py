"""The graph IR: immutable interned nodes, a validated topologically ordered `Graph`, and the builder."""

from gridverify.ir.builder import GraphBuilder, Var, lower_fused, rebuild
from gridverify.ir.from_onnx import from_onnx
from gridverify.ir.from_torch import from_torch
from gridverify.ir.graph import Graph, GraphError, Node, validate

__all__ = [
    "Graph",
    "GraphBuilder",
    "GraphError",
    "Node",
    "Var",
    "from_onnx",
    "from_torch",
    "lower_fused",
    "rebuild",
    "validate",
]

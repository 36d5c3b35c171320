"""The closed primitive set: one module per op, each registering an `OpDef` in `REGISTRY`.

Importing this package registers every op. Front-end lookup tables and the soundness tests are derived
from `REGISTRY`, so adding an op means adding one module here.
"""

from gridverify.ops import (  # noqa: F401  (imported for registration)
    abs,
    add,
    clip,
    conv,
    cos,
    exp,
    floor,
    gelu,
    leaf,
    leaky_relu,
    linear,
    log,
    matmul,
    mul,
    power,
    reciprocal,
    relu,
    scale,
    sigmoid,
    sin,
    sqrt,
    square,
    structural,
    sum,
    tanh,
)
from gridverify.ops.registry import REGISTRY, DomainError, OpDef, Relaxation, get_op, register

__all__ = ["REGISTRY", "DomainError", "OpDef", "Relaxation", "get_op", "register"]

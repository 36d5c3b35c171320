"""relu(x) = max(x, 0): two linear pieces meeting at 0, left slope 0 (see `gridverify.ops.kinked`).

Relaxation on ``[l, u]``: exact when ``l >= 0`` (y = x) or ``u <= 0`` (y = 0); otherwise
``alpha*x <= relu(x) <= u*(x - l)/(u - l)`` with ``alpha`` in [0, 1] (default: 1 if u > -l else 0, CROWN's
adaptive choice). Precondition: none. Range ``[0, inf)``. The chord's offset is rounded outward by the
registry (`gridverify.ops.registry.outward`); the other lines are exact in floating point.
"""

import math

import torch
from torch import nn

from gridverify.ops import kinked
from gridverify.ops.registry import register

OP = register(
    kinked.make_op(
        "relu",
        torch.relu,
        a=0.0,
        value_range=(0.0, math.inf),
        torch_functions=(torch.relu, torch.nn.functional.relu, "relu", nn.ReLU),
        onnx_types=("Relu",),
    )
)

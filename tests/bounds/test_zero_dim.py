"""Graphs whose nonlinear node is 0-d (shape ``()``): relu of a full sum, as the graph builder and the
torch front end build it. Branch and bound with neuron splitting used to fail in the BBPS shortcut
(``flatten(1, -2)`` of a root coefficient of shape (1, n_in))."""

import pytest
import torch

from gridverify.bab import Branching, SearchConfig, Verdict, maximise
from gridverify.bounds import crown
from gridverify.ir import GraphBuilder
from gridverify.ir.graph import Graph

F64 = torch.float64
N_IN = 8  # more inputs than SearchConfig.input_split_max_dims: branch on neurons


def _graph() -> Graph:
    """``y = 0.5 s - relu(s)`` with ``s = sum(x)``, x in [-1, 1]^8: max 0 at s = 0 (y = -|s|/2)."""
    b = GraphBuilder()
    x = b.input("x", (N_IN,))
    s = b.sum(x)
    assert s.shape == ()
    return b.build(s * 0.5 - b.relu(s))


def _box() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((1, N_IN), -1.0, dtype=F64), torch.full((1, N_IN), 1.0, dtype=F64)


def test_crown_on_a_zero_dim_relu_needs_a_split() -> None:
    """CROWN alone cannot prove y <= 0.01: the relu's lower line is 0 or s, giving 0.5 s <= 4 or -0.5 s."""
    r = crown(_graph(), _box())
    assert r.lower.shape == (1, 1)
    assert float(r.upper[0, 0]) > 0.01


@pytest.mark.parametrize("branching", list(Branching))
def test_maximise_splits_a_zero_dim_relu(branching: Branching) -> None:
    config = SearchConfig(timeout_s=20.0, branching=branching)
    (r,) = maximise(_graph(), _box(), torch.ones(1, 1, dtype=F64), threshold=0.01, config=config)
    assert r.verdict is Verdict.VERIFIED
    assert 0.0 <= r.upper <= 0.01

"""Making children: split a neuron (``z_j <= p`` / ``z_j >= p``) or an input dimension of each domain.

Children keep their parent's intervals, parameters and bound; the split neuron's interval is narrowed and
its split constraint flagged (it enters the next bound through a beta multiplier). Shapes as in
`gridverify.bab.domains`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from gridverify.bab.branching import Choice, split_point
from gridverify.bab.domains import Domains, Problem, concat


def _narrow(t: Tensor, rows: Tensor, index: Tensor, value: Tensor) -> Tensor:
    flat = t.reshape(t.shape[0], -1).clone()
    flat[rows, index[rows]] = value[rows].to(flat.dtype)
    return flat.reshape(t.shape)


def split_neurons(d: Domains, choice: Choice) -> Domains:
    """Two children per domain: ``z_j <= p`` (first half of the result) and ``z_j >= p``."""
    left, right = d, d
    for z in torch.unique(choice.node).tolist():
        rows = choice.node == z
        lo, hi = d.intervals[z]
        ivl, ivr = list(left.intervals), list(right.intervals)
        ivl[z] = (lo, _narrow(hi, rows, choice.index, choice.point))
        ivr[z] = (_narrow(lo, rows, choice.index, choice.point), hi)
        true = torch.ones_like(rows)
        left = replace(
            left,
            intervals=tuple(ivl),
            split_hi={**left.split_hi, z: _narrow(d.split_hi[z], rows, choice.index, true)},
        )
        right = replace(
            right,
            intervals=tuple(ivr),
            split_lo={**right.split_lo, z: _narrow(d.split_lo[z], rows, choice.index, true)},
        )
    return _children(left, right)


def split_inputs(d: Domains, dim: Tensor, mid: Tensor) -> Domains:
    rows = torch.ones_like(dim, dtype=torch.bool)
    left = replace(d, upper=_narrow(d.upper, rows, dim, mid))
    right = replace(d, lower=_narrow(d.lower, rows, dim, mid))
    return _children(left, right)


def _children(left: Domains, right: Domains) -> Domains:
    both = concat([left, right])
    return replace(both, depth=both.depth + 1)


def points(problem: Problem, d: Domains, node: Tensor, index: Tensor, tables: bool) -> Tensor:
    """Split point (B,) of neuron ``index`` of node ``node`` in each domain."""
    point = torch.empty_like(d.bound)
    for z in torch.unique(node).tolist():
        lo, hi = d.intervals[z]
        mine = torch.where(node == z, index, torch.zeros_like(index)).unsqueeze(1)
        p = split_point(problem, z, lo, hi, tables).reshape(d.size, -1)
        point = torch.where(node == z, p.gather(1, mine).squeeze(1), point)
    return point

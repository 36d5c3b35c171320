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
    """Two children per domain: input ``dim`` below ``mid`` (first half) and above. Where the parent has
    its last line (``input_coeff``, ``line_bound``), each child's bound is also that line's over the
    child's box: the line's minimum rises by ``|a_j|`` times the half of dimension j that the child drops
    on the side where ``a_j`` pulls it down, so one child of each pair gets a better bound for free (and
    may be settled without being bounded, `gridverify.bab.search`)."""
    rows = torch.ones_like(dim, dtype=torch.bool)
    left = replace(d, upper=_narrow(d.upper, rows, dim, mid))
    right = replace(d, lower=_narrow(d.lower, rows, dim, mid))
    if d.input_coeff is not None and d.line_bound is not None:
        a = d.input_coeff.reshape(d.size, -1).gather(1, dim.unsqueeze(1)).squeeze(1)
        lo = d.lower.reshape(d.size, -1).gather(1, dim.unsqueeze(1)).squeeze(1)
        hi = d.upper.reshape(d.size, -1).gather(1, dim.unsqueeze(1)).squeeze(1)
        # a is the coefficient of the lower line of -spec . y: its minimum reads hi_j where a_j < 0
        left = replace(left, bound=_line_child(d, (-a).clamp(min=0) * (hi - mid)))
        right = replace(right, bound=_line_child(d, a.clamp(min=0) * (mid - lo)))
    return _children(left, right)


def _line_child(d: Domains, gain: Tensor) -> Tensor:
    """A child's bound: the parent's, or its line's bound less ``gain`` (shrunk by 1e-9 relative for the
    rounding of the line's sums), where both are finite."""
    line = d.line_bound
    assert line is not None
    better = line - gain * (1.0 - 1e-9)
    ok = torch.isfinite(better) & torch.isfinite(gain)
    return torch.where(ok, torch.minimum(d.bound, better), d.bound)


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

"""Batches in turns: every open specification gets its worst domain into each batch, so one loose row cannot
starve the rows that a few splits would decide."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridverify.bab.search import _in_turns

F64 = torch.float64


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 1e6, allow_nan=False), st.integers(0, 6)), min_size=1, max_size=60))
def test_turns_are_a_permutation_that_serves_every_specification_first(pairs) -> None:
    gap = torch.tensor([g for g, _ in pairs], dtype=F64)
    spec = torch.tensor([s for _, s in pairs])
    order = _in_turns(gap, spec)
    assert sorted(order.tolist()) == list(range(len(pairs)))
    specs = spec.unique()
    first = order[: specs.numel()]
    # the first turn holds exactly one domain of every specification: its largest gap
    assert sorted(spec[first].tolist()) == specs.tolist()
    for k in first.tolist():
        assert gap[k] == gap[spec == spec[k]].max()
    # within a specification, domains come largest gap first
    for s in specs.tolist():
        mine = gap[order][spec[order] == s]
        assert torch.all(mine[:-1] >= mine[1:])

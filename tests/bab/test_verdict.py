"""The verdict rule, defined once in `gridverify.bab.verdict`: floats and tensors give the same answers."""

import torch

from gridverify.bab import Verdict, combine, decide, proves, refutes


def test_proves_and_refutes_on_floats_and_tensors_agree() -> None:
    values = [-1.0, 0.0, 1.0, float("inf"), float("-inf"), float("nan")]
    t = torch.tensor(values, dtype=torch.float64)
    for closed in (False, True):
        assert proves(t, 0.0, closed).tolist() == [proves(v, 0.0, closed) for v in values]
        assert refutes(t, 0.0, closed).tolist() == [refutes(v, 0.0, closed) for v in values]


def test_the_threshold_itself_is_safe_for_an_open_unsafe_set_and_unsafe_for_a_closed_one() -> None:
    assert proves(0.0, 0.0) and not proves(0.0, 0.0, closed=True)
    assert not refutes(0.0, 0.0) and refutes(0.0, 0.0, closed=True)
    assert decide(0.0, -1.0, 0.0) is Verdict.VERIFIED
    assert decide(0.0, -1.0, 0.0, closed=True) is Verdict.UNKNOWN


def test_a_constraint_is_violated_by_one_row_and_verified_by_all() -> None:
    v, u, k = Verdict.VERIFIED, Verdict.VIOLATED, Verdict.UNKNOWN
    assert combine([v, u]) is u and combine([k, u]) is u
    assert combine([v, v]) is v and combine([v, k]) is k and combine([v, None]) is k

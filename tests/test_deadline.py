"""`Deadline`: one value for when work must end, and the stages cut from it."""

import time

import pytest

from gridverify.deadline import Deadline


def test_a_stage_ends_at_its_own_instant_or_at_the_deadline_whichever_is_first() -> None:
    d = Deadline(time.monotonic(), 10.0)
    early = d.until(d.start + 4.0)
    assert early.start == d.start and early.end == pytest.approx(d.start + 4.0)
    assert d.until(d.end + 5.0).end == d.end  # never past the whole


def test_restarted_keeps_the_end_and_counts_from_now() -> None:
    d = Deadline(time.monotonic() - 3.0, 10.0)
    again = d.restarted()
    assert again.end == pytest.approx(d.end, abs=0.05) and again.start > d.start
    assert again.timeout_s == pytest.approx(7.0, abs=0.05)


def test_a_passed_deadline_has_nothing_left() -> None:
    d = Deadline.after(-1.0)
    assert d.passed() and d.remaining_s() == 0.0 and d.restarted().timeout_s == 0.0
    assert not Deadline.after(60.0).passed() and Deadline.after(60.0).remaining_s() > 59.0

"""The claimer's poll rhythm: quick while claims find rows, doubling to the poll interval."""

from __future__ import annotations

from datetime import timedelta

from outbox_worker.delivery.rhythm import PollRhythm

POLL = timedelta(seconds=5)
FAST = timedelta(milliseconds=20)


def test_a_new_worker_polls_at_the_poll_interval() -> None:
    """Before any row was found the worker waits the whole poll interval."""
    assert PollRhythm(POLL, FAST).after_claim(0) == 5.0


def test_found_rows_make_the_next_poll_quick() -> None:
    """A claim that found rows is followed by another after the fastest wait."""
    rhythm = PollRhythm(POLL, FAST)
    assert rhythm.after_claim(3) == 0.02
    assert rhythm.after_claim(1) == 0.02


def test_empty_claims_double_the_wait_up_to_the_poll_interval() -> None:
    """After rows stop coming each empty claim doubles the wait, capped at the poll interval."""
    rhythm = PollRhythm(POLL, FAST)
    rhythm.after_claim(1)
    waits = [rhythm.after_claim(0) for _ in range(12)]
    assert waits[:4] == [0.02, 0.04, 0.08, 0.16]
    assert waits == sorted(waits)
    assert waits[-1] == 5.0


def test_the_fastest_wait_never_exceeds_the_poll_interval() -> None:
    """A poll interval shorter than the fastest wait wins."""
    rhythm = PollRhythm(timedelta(milliseconds=10), FAST)
    assert rhythm.after_claim(1) == 0.01
    assert rhythm.after_claim(0) == 0.01

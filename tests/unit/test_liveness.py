"""When the claim loop counts as stalled: the liveness rule behind /healthz, on a hand-moved clock."""

from __future__ import annotations

from outbox_worker.delivery.liveness import ClaimProgress
from tests.unit.fakes import ManualClock


def test_a_loop_on_time_is_not_stalled() -> None:
    """A loop that said it would sleep 30 s is not late 20 s later, even with work due."""
    clock = ManualClock()
    progress = ClaimProgress(clock)
    progress.work_due = True
    progress.progressed(next_within=30)
    clock.now += 20
    assert progress.late_by() == 0
    assert not progress.stalled(timeout=5)


def test_a_late_loop_is_stalled_only_while_work_is_due() -> None:
    """Past its promise by more than the timeout, the loop is stalled if and only if work is due."""
    clock = ManualClock()
    progress = ClaimProgress(clock)
    progress.progressed(next_within=1)
    clock.now += 1 + 61
    assert progress.late_by() == 61
    assert not progress.stalled(timeout=60)
    progress.work_due = True
    assert progress.stalled(timeout=60)
    progress.progressed(next_within=0)
    assert not progress.stalled(timeout=60)

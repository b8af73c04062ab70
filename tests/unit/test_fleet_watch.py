"""The worker and the fleet: its registry beats and its obedience to the fleet-wide pause.

Through the fake Store (tests/unit/fakes.py): ``set_pause`` changes what heartbeats read and
notifies the worker, as `outbox-worker pause` does through PostgreSQL.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from outbox_worker.delivery.fleet_watch import RecentCount
from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.models import PausedBy, State, WorkerState
from tests.unit.fakes import ManualClock, message
from tests.unit.test_worker import Log, Rig, hold
from tests.waiting import wait_for


async def test_a_paused_fleet_claims_nothing_until_resumed(rig: Rig) -> None:
    """A worker started during a pause claims and sends nothing; resume delivers everything."""
    rig.store.set_pause(True)
    rig.store.add(*(message(n) for n in range(5)))
    async with rig.running():
        await wait_for(lambda: len(rig.store.beats) >= 3, message="three beats")
        assert rig.store.claims == []
        assert rig.store.beats[-1].state is WorkerState.PAUSED
        assert rig.store.beats[-1].paused_by is PausedBy.OPERATOR
        rig.store.set_pause(False)
        await wait_for(lambda: len(rig.store.settled) == 5, message="all delivered")
    assert sorted(rig.sender.sent) == [0, 1, 2, 3, 4]


async def test_nothing_is_claimed_before_the_pause_is_read(rig: Rig) -> None:
    """While the database does not answer the pause is unknown: no claim, until it does."""
    rig.store.fail("heartbeat", DatabaseUnavailable("down"))
    rig.store.fail("fleet_pause", DatabaseUnavailable("down"))
    rig.store.add(message(1))
    async with rig.running():
        await wait_for(lambda: rig.store.failures["heartbeat"] >= 3, message="failed beats")
        assert rig.store.claims == []
        rig.store.answer_again("heartbeat")
        rig.store.answer_again("fleet_pause")
        await wait_for(lambda: rig.store.settled_ids() == [1], message="delivered")


async def test_a_pause_hands_back_queued_claims_and_lets_sends_in_flight_finish(
    rig: Rig, logs: Log
) -> None:
    """Queued claims go back unsent (no attempt spent); sends in flight finish and settle."""
    gates, rig.sender = hold(*range(1, 10))
    gates[0] = asyncio.Event()
    gates[0].set()
    rig.store.add(message(0))
    async with rig.running(concurrency=2, batch_size=4):
        await wait_for(lambda: rig.store.settled_ids() == [0], message="the probe")
        rig.store.add(*(message(n) for n in range(1, 7)))
        await wait_for(lambda: rig.sender.in_flight == {1, 2} and not rig.store.due)
        rig.store.set_pause(True)
        await wait_for(lambda: len(rig.store.released) == 4, message="queued claims released")
        for gate in gates.values():
            gate.set()
        await wait_for(lambda: sorted(rig.store.settled_ids()) == [0, 1, 2], message="settled")
        assert sorted(rig.sender.sent) == [0, 1, 2]
        assert all(s.state is State.ACKNOWLEDGED for s in rig.store.settled)
        assert [e["reason"] for e in logs if e["event"] == "fleet.paused"] == ["test"]
        released = list(rig.store.released)
        rig.store.set_pause(False)
        rig.store.add(*released)  # released rows are due again at once
        await wait_for(lambda: len(rig.store.settled) == 7, message="delivered after resume")
    assert sorted(rig.sender.sent) == list(range(7))
    assert [e["event"] for e in logs if e["event"].startswith("fleet.")] == [
        "fleet.paused",
        "fleet.resumed",
    ]


async def test_the_registry_follows_the_worker_from_start_to_stop(rig: Rig) -> None:
    """Beats say starting, then delivering with the sends of the last minute, then stopped."""
    rig.store.add(*(message(n) for n in range(3)))
    async with rig.running():
        await wait_for(lambda: len(rig.store.settled) == 3, message="delivered")
        await wait_for(lambda: rig.store.beats[-1].sends_last_minute == 3, message="a beat")
    first, last = rig.store.beats[0], rig.store.beats[-1]
    assert first.state is WorkerState.STARTING
    assert {b.state for b in rig.store.beats[1:-1]} <= {
        WorkerState.DELIVERING,
        WorkerState.STOPPING,
    }
    assert last.state is WorkerState.STOPPED
    assert len({b.worker_id for b in rig.store.beats}) == 1
    assert first.pid > 0
    assert first.host
    assert first.version


def test_recent_count_is_the_growth_over_the_last_minute() -> None:
    """Samples older than a minute fall out; the newest one before the window is the base."""
    clock = ManualClock()
    recent = RecentCount(clock)
    assert recent.add(5) == 5  # in the first minute: since the start
    clock.advance(30)
    assert recent.add(20) == 20
    clock.advance(31)
    assert recent.add(26) == 21  # the base: the newest sample before the window (t=0: 5)
    clock.advance(60)
    assert recent.add(26) == 0


async def test_between_heartbeats_a_polling_worker_only_reads_the_pause(rig: Rig) -> None:
    """A short poll interval without LISTEN reads the pause each poll, writing the row only
    every heartbeat (and once when the state changes)."""
    async with rig.running(listen=False, poll_interval=timedelta(milliseconds=20)):
        await wait_for(lambda: rig.store.pause_reads >= 5, message="pause reads")
        beats, reads = len(rig.store.beats), rig.store.pause_reads  # starting, delivering
        await wait_for(lambda: rig.store.pause_reads >= reads + 10, message="more reads")
        assert len(rig.store.beats) == beats
        rig.store.set_pause(True)  # no LISTEN: found by a read, then written at once
        await wait_for(
            lambda: rig.store.beats[-1].state is WorkerState.PAUSED, message="a paused beat"
        )
        assert len(rig.store.beats) == beats + 1

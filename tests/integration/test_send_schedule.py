"""The fleet's shared send schedule in PostgreSQL: reservations never overlap, and no row
written by hand can stall the fleet."""

from __future__ import annotations

import itertools

import asyncpg

from outbox_worker.store.delivery import SCHEDULE_HORIZON_S, PostgresStore


async def test_an_idle_schedule_starts_now(store: PostgresStore) -> None:
    """The first reservation of an idle fleet may start at once: idle time earns no burst."""
    assert await store.reserve_send_time(0.5) == 0.0


async def test_reservations_follow_each_other_without_overlap(
    store: PostgresStore, pg: asyncpg.Connection
) -> None:
    """Each reservation begins where the one before it ends."""
    # Spans far longer than the test takes on the busiest machine: the schedule stays ahead of
    # now() throughout, so it is never restarted at the present between two reservations.
    span = 20.0
    starts, ends = [], []
    for _ in range(3):
        starts.append(await store.reserve_send_time(span))
        ends.append(await pg.fetchval("SELECT next_slot_at FROM outbox.send_schedule"))

    assert starts[0] == 0.0
    # Where each one ends, to the microsecond: the one before's end plus its span.
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(ends)] == [span, span]
    # Seconds until each starts: its place on the schedule less the time since the first.
    assert 0 < starts[1] <= span < starts[2] <= 2 * span


async def test_a_schedule_written_far_ahead_is_pulled_back(
    store: PostgresStore, pg: asyncpg.Connection
) -> None:
    """A next slot a year away (a hand-edited row) delays the fleet by the horizon at most."""
    await pg.execute("UPDATE outbox.send_schedule SET next_slot_at = now() + interval '1 year'")

    assert await store.reserve_send_time(0.5) <= SCHEDULE_HORIZON_S


async def test_a_deleted_schedule_row_is_recreated(
    store: PostgresStore, pg: asyncpg.Connection
) -> None:
    """Reservations go on after the row was deleted."""
    await pg.execute("DELETE FROM outbox.send_schedule")

    assert await store.reserve_send_time(0.5) == 0.0
    assert await pg.fetchval("SELECT count(*) FROM outbox.send_schedule") == 1

"""The fleet's shared send schedule in PostgreSQL: reservations never overlap, and no row
written by hand can stall the fleet."""

from __future__ import annotations

import asyncpg

from outbox_worker.store.delivery import SCHEDULE_HORIZON_S, PostgresStore


async def test_an_idle_schedule_starts_now(store: PostgresStore) -> None:
    """The first reservation of an idle fleet may start at once: idle time earns no burst."""
    assert await store.reserve_send_time(0.5) == 0.0


async def test_reservations_follow_each_other_without_overlap(store: PostgresStore) -> None:
    """Each reservation begins where the one before it ends."""
    starts = [await store.reserve_send_time(1.0) for _ in range(3)]

    assert starts[0] == 0.0
    assert 0.9 < starts[1] <= 1.0
    assert 1.9 < starts[2] <= 2.0


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

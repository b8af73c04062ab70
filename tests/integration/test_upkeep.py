"""The fleet's upkeep against PostgreSQL: the backlog sample and retention of old rows."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from outbox_worker.delivery.upkeep import retention_pass
from outbox_worker.models import Backlog, State
from outbox_worker.observability import Metrics
from outbox_worker.settings.config import RETENTION_BATCH_SIZE, Secret, Settings
from outbox_worker.store.delivery import PostgresStore
from outbox_worker.store.housekeeping import RETENTION_LOCK
from tests.integration.rows import insert_message
from tests.integration.running import running_worker
from tests.waiting import wait_for


def settings(database_url: str, **changes: object) -> Settings:
    """Settings for upkeep on this test's database, with the defaults otherwise."""
    base = Settings(database_url=database_url, api_key=Secret("sk_test_upkeep"))
    return base.with_changes(**changes)


async def ids(pg: asyncpg.Connection) -> list[int]:
    """Ids of every row left, in order."""
    return [r["id"] for r in await pg.fetch("SELECT id FROM outbox.messages ORDER BY id")]


async def test_backlog_counts_due_and_later_pending_oldest_age_and_dead(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """The sample splits pending rows by due time, ages the oldest, and counts dead letters."""
    await insert_message(pg, state="pending", ago=timedelta(minutes=20))  # created 21 min ago
    await insert_message(pg, state="pending")
    later = await insert_message(pg, state="pending")
    await pg.execute(
        "UPDATE outbox.messages SET available_at = now() + interval '1 hour' WHERE id = $1", later
    )
    await insert_message(pg, state="dead")
    await insert_message(pg, state="acknowledged")
    backlog = await store.backlog()
    assert (backlog.due, backlog.not_due, backlog.dead) == (2, 1, 1)
    assert 21 * 60 - 5 < backlog.oldest_pending_s < 21 * 60 + 60


async def test_backlog_of_an_empty_outbox_is_zero(store: PostgresStore) -> None:
    """With no rows, every figure is 0 (an idle outbox is not an old backlog)."""
    assert await store.backlog() == Backlog(due=0, not_due=0, oldest_pending_s=0.0, dead=0)


async def test_retention_deletes_only_rows_past_their_window(
    pg: asyncpg.Connection, store: PostgresStore, database_url: str
) -> None:
    """Acknowledged rows past 7 days and dead ones past 30 go; recent and pending rows stay."""
    await insert_message(pg, state="acknowledged", ago=timedelta(days=8))
    recent_ack = await insert_message(pg, state="acknowledged", ago=timedelta(days=6))
    await insert_message(pg, state="dead", ago=timedelta(days=31))
    recent_dead = await insert_message(pg, state="dead", ago=timedelta(days=8))
    old_pending = await insert_message(pg, state="pending", ago=timedelta(days=60))
    metrics = Metrics()
    deleted = await retention_pass(settings(database_url), store, metrics)
    assert deleted == {"acknowledged": 1, "dead": 1, "audit": 0, "workers": 0}
    assert await ids(pg) == [recent_ack, recent_dead, old_pending]
    assert (
        metrics.registry.get_sample_value(
            "outbox_retention_deleted_total", {"state": "acknowledged"}
        )
        == 1
    )


async def test_retention_works_in_batches_until_nothing_is_left(
    pg: asyncpg.Connection, store: PostgresStore, database_url: str
) -> None:
    """More expired rows than one batch holds are all deleted in one pass."""
    count = RETENTION_BATCH_SIZE * 2 + 7
    await pg.execute(
        "INSERT INTO outbox.messages (payload, state, acknowledged_at) "
        "SELECT '{}'::jsonb, 'acknowledged', now() - interval '8 days' "
        "FROM generate_series(1, $1::int)",
        count,
    )
    deleted = await retention_pass(settings(database_url), store, Metrics())
    assert deleted["acknowledged"] == count
    assert await ids(pg) == []


async def test_retention_skips_while_another_process_holds_the_lock(
    pg: asyncpg.Connection, store: PostgresStore, database_url: str
) -> None:
    """While another transaction holds the fleet's retention lock, a pass deletes nothing."""
    old = await insert_message(pg, state="acknowledged", ago=timedelta(days=8))
    async with pg.transaction():
        await pg.execute("SELECT pg_advisory_xact_lock($1)", RETENTION_LOCK)
        assert await store.purge_expired(State.ACKNOWLEDGED, timedelta(days=7), 10) is None
        assert await retention_pass(settings(database_url), store, Metrics()) == {}
        assert await ids(pg) == [old]
    # The lock ends with its transaction: the next pass takes it.
    assert await retention_pass(settings(database_url), store, Metrics()) == {
        "acknowledged": 1,
        "dead": 0,
        "audit": 0,
        "workers": 0,
    }


async def test_retention_keeps_a_row_requeued_after_it_was_selected(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """A dead letter requeued to pending is no longer expired and is kept."""
    dead = await insert_message(pg, state="dead", ago=timedelta(days=40))
    await pg.execute("UPDATE outbox.messages SET state = 'pending' WHERE id = $1", dead)
    assert await store.purge_expired(State.DEAD, timedelta(days=30), 10) == 0
    assert await ids(pg) == [dead]


async def test_a_running_worker_removes_old_rows_itself(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """A worker makes its first retention pass soon after start, with no operator command."""
    await insert_message(pg, state="acknowledged", ago=timedelta(days=8))
    await insert_message(pg, state="dead", ago=timedelta(days=31))
    kept = await insert_message(pg, state="acknowledged", ago=timedelta(hours=2))
    async with running_worker(
        database_url, "http://127.0.0.1:9/v2/registration", retention_interval=timedelta(seconds=1)
    ):
        await wait_for(lambda: _only(pg, kept), timeout=15, message="old rows deleted")


async def _only(pg: asyncpg.Connection, kept: int) -> bool:
    return await ids(pg) == [kept]


async def test_retention_deletes_old_audit_rows_and_forgets_long_gone_workers(
    pg: asyncpg.Connection, store: PostgresStore, database_url: str
) -> None:
    """Audit rows past OUTBOX_RETAIN_AUDIT and workers unseen for an hour go; the rest stay."""
    for action in ("pause", "resume"):
        await pg.execute(
            "INSERT INTO outbox.audit_log (operation, action, via) VALUES (gen_random_uuid(), $1, 'cli')",
            action,
        )
    await pg.execute("ALTER TABLE outbox.audit_log DISABLE TRIGGER audit_log_guard")
    await pg.execute(
        "UPDATE outbox.audit_log SET at = now() - interval '401 days' WHERE action = 'pause'"
    )
    await pg.execute("ALTER TABLE outbox.audit_log ENABLE TRIGGER audit_log_guard")
    await pg.execute(
        "INSERT INTO outbox.workers (id, host, pid, version, seen_at) VALUES "
        "(gen_random_uuid(), 'old', 1, 'v', now() - interval '2 hours'), "
        "(gen_random_uuid(), 'new', 2, 'v', now() - interval '5 minutes')"
    )
    deleted = await retention_pass(settings(database_url), store, Metrics())
    assert (deleted["audit"], deleted["workers"]) == (1, 1)
    assert await pg.fetchval("SELECT array_agg(action) FROM outbox.audit_log") == ["resume"]
    assert await pg.fetchval("SELECT array_agg(host) FROM outbox.workers") == ["new"]

"""Fleet control against real PostgreSQL: the workers registry, the pause, the audit log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest

from outbox_worker.errors import InvalidRequest
from outbox_worker.models import PausedBy, PauseState, WorkerBeat, WorkerState
from outbox_worker.schema import FLEET_PAUSE
from outbox_worker.store import fleet
from outbox_worker.store import fleet_queries as sql
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor, AuditAction, audit_log, record
from outbox_worker.store.delivery import PostgresStore
from tests.integration.conftest import LoginAs
from tests.integration.rows import insert_dead_rows, insert_message

ALICE = Actor.cli("alice")
DENIED = asyncpg.InsufficientPrivilegeError


async def _beat(
    conn: asyncpg.Connection,
    worker_id: uuid.UUID,
    state: WorkerState = WorkerState.DELIVERING,
    paused_by: PausedBy | None = None,
) -> asyncpg.Record:
    """One heartbeat as a worker writes it; returns the pause it read."""
    row = await conn.fetchrow(
        sql.HEARTBEAT, worker_id, "host-a", 4242, "1.2.3", state, paused_by, True, 17, 3,
        FLEET_PAUSE,
    )  # fmt: skip
    assert row is not None
    return row


async def test_pause_records_who_when_why_and_resume_clears_it(pg: asyncpg.Connection) -> None:
    """pause_state shows the reason, the start, the login and the OS user; resume clears it."""
    assert await fleet.pause_state(pg) == fleet.PauseState(paused=False)
    paused = await fleet.pause(pg, "  Ravelin asked us\nto hold  ", ALICE)
    assert (paused.paused, paused.reason, paused.via, paused.actor) == (
        True, "Ravelin asked us to hold", "cli", "alice",
    )  # fmt: skip
    assert paused.db_role == await pg.fetchval("SELECT session_user")
    assert paused.paused_at is not None
    assert await fleet.pause_state(pg) == paused
    resumed = await fleet.resume(pg, Actor.console("bob"))
    assert (resumed.paused, resumed.reason, resumed.paused_at) == (False, None, None)
    assert (resumed.via, resumed.actor) == ("console", "bob")


async def test_pausing_again_keeps_the_start_and_takes_the_new_reason(
    pg: asyncpg.Connection,
) -> None:
    """A second pause replaces the reason; the pause still counts from the first."""
    first = await fleet.pause(pg, "bad data from producer", ALICE)
    second = await fleet.pause(pg, "still investigating", ALICE)
    assert second.reason == "still investigating"
    assert second.paused_at == first.paused_at


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "tab\x07bell"])
async def test_a_bad_reason_is_refused_and_changes_nothing(
    pg: asyncpg.Connection, reason: str
) -> None:
    """An empty, overlong or unprintable reason raises InvalidRequest; nothing is written."""
    with pytest.raises(InvalidRequest):
        await fleet.pause(pg, reason, ALICE)
    assert not (await fleet.pause_state(pg)).paused
    assert await audit_log(pg) == []


async def test_pause_and_resume_notify_the_fleet_at_commit(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """A listener on the fleet channel hears 'paused' then 'resumed'."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(fleet.FLEET_CHANNEL, lambda *args: heard.put_nowait(args[3]))
        await fleet.pause(pg, "hold", ALICE)
        await fleet.resume(pg, ALICE)
        async with asyncio.timeout(10):
            assert [await heard.get(), await heard.get()] == ["paused", "resumed"]
    finally:
        await listener.close()


async def test_pause_and_resume_are_audited(pg: asyncpg.Connection) -> None:
    """Each writes one audit row: who, the reason, whether it was paused; newest first."""
    await fleet.pause(pg, "hold please", ALICE)
    await fleet.resume(pg, ALICE)
    await fleet.resume(pg, ALICE)
    entries = await audit_log(pg)
    assert [(e.action, e.row_count, e.details) for e in entries] == [
        ("resume", 0, {"was_paused": False}),
        ("resume", 1, {"was_paused": True}),
        ("pause", 1, {"reason": "hold please", "was_paused": False}),
    ]
    assert {(e.via, e.actor, e.db_role) for e in entries} == {
        ("cli", "alice", await pg.fetchval("SELECT session_user"))
    }


async def test_heartbeat_registers_refreshes_and_reads_the_pause(pg: asyncpg.Connection) -> None:
    """A worker's beat makes its row, refreshes it, and returns the fleet's pause."""
    worker_id = uuid.uuid4()
    assert (await _beat(pg, worker_id))["paused"] is False
    await fleet.pause(pg, "hold", ALICE)
    beat = await _beat(pg, worker_id, WorkerState.PAUSED, PausedBy.OPERATOR)
    assert (beat["paused"], beat["reason"]) == (True, "hold")
    [worker] = await fleet.list_workers(pg)
    assert (worker.id, worker.host, worker.pid, worker.version) == (
        worker_id, "host-a", 4242, "1.2.3",
    )  # fmt: skip
    assert (worker.state, worker.paused_by, worker.listening) == (
        WorkerState.PAUSED, PausedBy.OPERATOR, True,
    )  # fmt: skip
    assert (worker.sends_last_minute, worker.in_flight) == (17, 3)
    assert worker.seen_ago_s < fleet.GONE_AFTER.total_seconds()


async def test_a_worker_not_seen_shows_as_gone_and_is_forgotten_later(
    pg: asyncpg.Connection,
) -> None:
    """Unseen for GONE_AFTER: gone (a clean stop stays stopped); past FORGET_AFTER: deleted."""
    fresh, silent, stopped, ancient = (uuid.uuid4() for _ in range(4))
    await _beat(pg, fresh)
    await _beat(pg, silent)
    await _beat(pg, stopped, WorkerState.STOPPED)
    await _beat(pg, ancient)
    await pg.execute(
        "UPDATE outbox.workers SET seen_at = now() - $2::interval WHERE id = ANY($1::uuid[])",
        [silent, stopped], fleet.GONE_AFTER + timedelta(seconds=1),
    )  # fmt: skip
    await pg.execute(
        "UPDATE outbox.workers SET seen_at = now() - interval '2 hours' WHERE id = $1", ancient
    )
    states = {w.id: w.state for w in await fleet.list_workers(pg)}
    assert states == {
        fresh: WorkerState.DELIVERING,
        silent: WorkerState.GONE,
        stopped: WorkerState.STOPPED,
        ancient: WorkerState.GONE,
    }
    summary = await fleet.fleet_summary(pg)
    assert summary.workers[WorkerState.GONE] == 2
    assert summary.workers[WorkerState.PAUSED] == 0
    await pg.execute(sql.FORGET_WORKERS, fleet.FORGET_AFTER)
    assert {w.id for w in await fleet.list_workers(pg)} == {fresh, silent, stopped}


async def test_a_batched_requeue_is_one_audit_entry_with_its_filters(
    pg: asyncpg.Connection,
) -> None:
    """Every batch writes its row; audit_log shows one entry with the total and the filters."""
    await insert_dead_rows(pg, 25, last_status=503)
    filters = ops.DeadFilters(status_code=503, since=timedelta(hours=1))
    assert await ops.requeue_dead(pg, filters, actor=ALICE, batch_size=10) == 25
    [entry] = await audit_log(pg)
    assert (entry.action, entry.row_count, entry.transactions) == ("requeue", 25, 3)
    assert entry.details == {
        "filters": {
            "since_s": 3600.0,
            "status_code": 503,
            "error_contains": None,
            "dedup_key": None,
            "limit": None,
        }
    }
    assert await pg.fetchval("SELECT count(*) FROM outbox.audit_log") == 3


async def test_a_requeue_by_ids_records_the_ids_it_moved(pg: asyncpg.Connection) -> None:
    """The ids of every batch are joined in the entry; one that moved nothing leaves 0 rows."""
    ids = [await insert_message(pg) for _ in range(3)]
    await ops.requeue_ids(pg, ids, actor=ALICE, batch_size=2)
    await ops.requeue_ids(pg, ids, actor=ALICE)  # pending now: nothing moves
    nothing, moved = await audit_log(pg)
    assert (moved.row_count, moved.details["ids"]) == (3, sorted(ids))
    assert (nothing.row_count, nothing.details) == (0, {"ids": []})


async def test_purge_is_audited_by_state(pg: asyncpg.Connection) -> None:
    """A purge's entry carries its arguments and the rows it deleted; a dry run writes none."""
    await insert_message(pg, state="acknowledged", ago=timedelta(days=9))
    await insert_message(pg, ago=timedelta(days=9))
    await ops.purge(pg, timedelta(days=7), actor=ALICE, include_dead=True, dry_run=True)
    assert await audit_log(pg) == []
    await ops.purge(pg, timedelta(days=7), actor=ALICE, include_dead=True)
    [entry] = await audit_log(pg)
    assert (entry.action, entry.row_count, entry.transactions) == ("purge", 2, 2)
    assert entry.details == {
        "older_than_s": 604800.0,
        "include_dead": True,
        "state": "acknowledged",
    }


async def test_audit_log_since_and_limit(pg: asyncpg.Connection) -> None:
    """--since keeps recent operations only; limit keeps the newest."""
    for n in range(3):
        await record(pg, AuditAction.SIGN_IN, Actor.console(f"user{n}"))
    assert [e.actor for e in await audit_log(pg, limit=2)] == ["user2", "user1"]
    assert len(await audit_log(pg, since=timedelta(hours=1))) == 3
    await pg.execute("ALTER TABLE outbox.audit_log DISABLE TRIGGER audit_log_guard")
    await pg.execute("UPDATE outbox.audit_log SET at = now() - interval '2 days'")
    await pg.execute("ALTER TABLE outbox.audit_log ENABLE TRIGGER audit_log_guard")
    assert await audit_log(pg, since=timedelta(days=1)) == []


async def test_the_trigger_stamps_the_clock_and_the_login(pg: asyncpg.Connection) -> None:
    """A client cannot backdate a row or name another login."""
    await pg.execute(
        "INSERT INTO outbox.audit_log (operation, action, via, at, db_role) "
        "VALUES (gen_random_uuid(), 'purge', 'cli', '2001-01-01', 'someone_else')"
    )
    row = await pg.fetchrow(
        "SELECT at > now() - interval '1 minute' AS now, db_role FROM outbox.audit_log"
    )
    assert row is not None
    assert (row["now"], row["db_role"]) == (True, await pg.fetchval("SELECT session_user"))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE outbox.audit_log SET row_count = 0",
        "DELETE FROM outbox.audit_log",
        "TRUNCATE outbox.audit_log",
    ],
)
async def test_audit_rows_cannot_change_even_for_the_owner(
    pg: asyncpg.Connection, statement: str
) -> None:
    """The guard refuses UPDATE, TRUNCATE and deleting rows younger than 90 days, to anyone."""
    await record(pg, AuditAction.PURGE, ALICE, row_count=5)
    with pytest.raises(DENIED, match="append-only"):
        await pg.execute(statement)


async def test_audit_retention_keeps_90_days_at_least(pg: asyncpg.Connection) -> None:
    """purge_expired_audit refuses a window under 90 days and deletes only rows past it."""
    await record(pg, AuditAction.PAUSE, ALICE)
    await record(pg, AuditAction.RESUME, ALICE)
    await pg.execute("ALTER TABLE outbox.audit_log DISABLE TRIGGER audit_log_guard")
    await pg.execute(
        "UPDATE outbox.audit_log SET at = now() - interval '500 days' WHERE action = 'pause'"
    )
    await pg.execute("ALTER TABLE outbox.audit_log ENABLE TRIGGER audit_log_guard")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="90 days"):
        await pg.fetchrow(sql.PURGE_EXPIRED_AUDIT, timedelta(days=30), 100, 1)
    row = await pg.fetchrow(sql.PURGE_EXPIRED_AUDIT, timedelta(days=400), 100, 1)
    assert row is not None
    assert (row["held"], row["deleted"]) == (True, 1)
    assert [e.action for e in await audit_log(pg)] == ["resume"]


async def test_operator_role_pauses_reads_and_audits_but_never_rewrites(
    login_as: LoginAs,
) -> None:
    """An operator login pauses, resumes, lists workers and the log; UPDATE/DELETE are denied."""
    conn = await asyncpg.connect(await login_as("outbox_operator"))
    try:
        await fleet.pause(conn, "hold", ALICE)
        await fleet.resume(conn, ALICE)
        await record(conn, AuditAction.REVEAL, Actor.console("bob"), details={"message_id": 7})
        assert await fleet.list_workers(conn) == []
        assert (await fleet.fleet_summary(conn)).pause.paused is False
        login = await conn.fetchval("SELECT session_user")
        assert {e.db_role for e in await audit_log(conn)} == {login}
        for statement in (
            "UPDATE outbox.audit_log SET row_count = 0",
            "DELETE FROM outbox.audit_log",
            "INSERT INTO outbox.workers (id, host, pid, version) VALUES (gen_random_uuid(), 'h', 1, 'v')",
        ):
            with pytest.raises(DENIED):
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_worker_role_beats_and_reads_the_pause_but_cannot_set_it(
    pg: asyncpg.Connection, login_as: LoginAs
) -> None:
    """A worker login keeps its registry row and reads the pause; it cannot pause or audit."""
    await fleet.pause(pg, "hold", ALICE)
    conn = await asyncpg.connect(await login_as("outbox_worker"))
    try:
        assert (await _beat(conn, uuid.uuid4()))["paused"] is True
        await conn.execute(sql.FORGET_WORKERS, fleet.FORGET_AFTER)
        row = await conn.fetchrow(sql.PURGE_EXPIRED_AUDIT, timedelta(days=400), 100, 1)
        assert row is not None
        with pytest.raises(DENIED):
            await fleet.resume(conn, ALICE)
        with pytest.raises(DENIED):
            await record(conn, AuditAction.PURGE, ALICE)
        with pytest.raises(DENIED):
            await conn.fetch("SELECT * FROM outbox.audit_log")
    finally:
        await conn.close()


async def test_the_worker_store_reads_and_beats_through_its_pool(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """PostgresStore.heartbeat writes the row and reads the pause; fleet_pause only reads it."""
    beat = WorkerBeat(
        worker_id=uuid.uuid4(), host="h", pid=1, version="v", state=WorkerState.STARTING,
        paused_by=None, listening=False, sends_last_minute=0, in_flight=0,
    )  # fmt: skip
    assert (await store.heartbeat(beat)).paused is False
    assert await store.fleet_pause() == PauseState(paused=False)
    paused = await fleet.pause(pg, "hold", ALICE)
    assert await store.fleet_pause() == paused
    assert await store.heartbeat(beat) == paused
    assert [w.state for w in await fleet.list_workers(pg)] == [WorkerState.STARTING]
    assert await store.forget_workers(timedelta(0)) == 1


async def test_the_audit_log_keeps_filters_masked(pg: asyncpg.Connection) -> None:
    """Personal data typed into a filter is stored masked, as the screens show it."""
    filters = ops.DeadFilters(error_contains="jane.doe@example.com", dedup_key="jane@example.com")
    await ops.requeue_dead(pg, filters, actor=ALICE)
    [entry] = await audit_log(pg)
    stored = await pg.fetchval("SELECT details::text FROM outbox.audit_log")
    assert "jane" not in stored
    assert entry.details["filters"]["error_contains"] == "j***@e***.com"
    assert entry.details["filters"]["dedup_key"] == "j***@e***.com"


async def test_personal_data_in_a_pause_reason_is_masked(pg: asyncpg.Connection) -> None:
    """An email typed into the reason is kept masked, in the pause and in the audit log."""
    paused = await fleet.pause(pg, "customer jane.doe@example.com complained", ALICE)
    assert paused.reason == "customer j***@e***.com complained"
    stored = await pg.fetchval("SELECT details::text FROM outbox.audit_log")
    assert "jane" not in stored

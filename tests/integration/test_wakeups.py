"""Enqueue wakes the workers without serializing the application's commits (migration 0006).

A transaction that queued a NOTIFY takes a cluster-wide lock at commit, so enqueues notify at most
once per 10 ms; a worker woken by one polls quickly while rows keep coming, and an idle worker
is still woken at once by the next enqueue (or, in poll-only mode, finds it within the poll
interval).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, Literal

import asyncpg
import pytest

import outbox_worker
from outbox_worker.enqueue import serialize
from outbox_worker.standin import StandIn
from tests.cases import update
from tests.integration.running import running_worker
from tests.waiting import wait_for

THROTTLE_MS = 10  # outbox.claim_wakeup's default interval
SENTINEL = "test-sentinel"


async def _forget_last_wakeup(pg: asyncpg.Connection) -> None:
    """Make the throttle's interval expired, as after a long idle spell."""
    await pg.execute("SELECT setval('outbox.last_wakeup_ms', 0)")


@pytest.fixture
async def listener(database_url: str) -> AsyncIterator[list[str]]:
    """A connection LISTENing on the enqueue channel; yields the payloads received, in order."""
    conn = await asyncpg.connect(database_url)
    received: list[str] = []
    await conn.add_listener("outbox", lambda *args: received.append(args[3]))
    try:
        yield received
    finally:
        await conn.close()


async def _wakeups_before_sentinel(pg: asyncpg.Connection, received: list[str]) -> int:
    # Notifications reach a listener in commit order: once the sentinel (sent last) is in,
    # every wake-up the enqueues sent is in too.
    await pg.execute("SELECT pg_notify('outbox', $1)", SENTINEL)
    await wait_for(lambda: SENTINEL in received, timeout=10, message="the sentinel NOTIFY")
    return received.index(SENTINEL)


Enqueue = Callable[[asyncpg.Connection, int], Any]


async def _python_enqueue(conn: asyncpg.Connection, i: int) -> None:
    await outbox_worker.enqueue_async(conn, update(f"py-{i}"))


async def _sql_enqueue(conn: asyncpg.Connection, i: int) -> None:
    await conn.fetchval("SELECT outbox.enqueue($1::jsonb)", _body(f"sql-{i}"))


def _body(customer_id: str) -> str:
    return serialize(update(customer_id))


@pytest.mark.parametrize("enqueue", [_python_enqueue, _sql_enqueue], ids=["python", "sql"])
async def test_separate_transactions_notify_at_most_once_per_interval(
    pg: asyncpg.Connection, listener: list[str], enqueue: Enqueue
) -> None:
    """N enqueues in N transactions send one NOTIFY per 10 ms at most."""
    await _forget_last_wakeup(pg)
    count = 40
    started = time.monotonic()
    for i in range(count):
        async with pg.transaction():
            await enqueue(pg, i)
    elapsed_ms = (time.monotonic() - started) * 1000
    wakeups = await _wakeups_before_sentinel(pg, listener)
    assert 1 <= wakeups <= 1 + elapsed_ms // THROTTLE_MS


@pytest.mark.parametrize("enqueue", [_python_enqueue, _sql_enqueue], ids=["python", "sql"])
async def test_no_notify_while_the_interval_has_not_passed(
    pg: asyncpg.Connection, listener: list[str], enqueue: Enqueue
) -> None:
    """Enqueues within the interval after a NOTIFY send none: they take no notification lock."""
    # The last wake-up an hour from now: every enqueue below falls inside its interval.
    await pg.execute(
        "SELECT setval('outbox.last_wakeup_ms', "
        "(extract(epoch FROM now() + interval '1 hour') * 1000)::bigint)"
    )
    for i in range(20):
        async with pg.transaction():
            await enqueue(pg, i)
    assert await _wakeups_before_sentinel(pg, listener) == 0


async def test_an_enqueue_after_idle_notifies(pg: asyncpg.Connection, listener: list[str]) -> None:
    """The first enqueue after the interval has passed sends a NOTIFY at its commit."""
    await _forget_last_wakeup(pg)
    async with pg.transaction():
        await outbox_worker.enqueue_async(pg, update("lone"))
        assert listener == []  # queued, sent only at commit
    assert await _wakeups_before_sentinel(pg, listener) == 1


async def test_an_enqueue_never_waits_for_a_notifying_transaction(
    database_url: str, pg: asyncpg.Connection, listener: list[str]
) -> None:
    """While one open transaction holds the notifier's lock, other enqueues go ahead without it."""
    await _forget_last_wakeup(pg)
    other = await asyncpg.connect(database_url)
    try:
        notifier = other.transaction()
        await notifier.start()
        await outbox_worker.enqueue_async(other, update("notifier"))
        await _forget_last_wakeup(pg)  # the interval has passed again, but the lock is held
        async with asyncio.timeout(5), pg.transaction():
            await outbox_worker.enqueue_async(pg, update("bystander"))
        await notifier.commit()
    finally:
        await other.close()
    assert await _wakeups_before_sentinel(pg, listener) == 1


@pytest.mark.parametrize("isolation", ["repeatable_read", "serializable"])
async def test_enqueue_under_snapshot_isolation_never_fails_on_the_throttle(
    database_url: str, pg: asyncpg.Connection, isolation: Literal["repeatable_read", "serializable"]
) -> None:
    """An enqueue whose snapshot predates another transaction's NOTIFY still succeeds."""
    await _forget_last_wakeup(pg)
    other = await asyncpg.connect(database_url)
    try:
        async with other.transaction(isolation=isolation):
            await other.fetchval("SELECT count(*) FROM outbox.messages")  # the snapshot is taken
            async with pg.transaction():
                await outbox_worker.enqueue_async(pg, update("first"))  # notifies, commits
            await _forget_last_wakeup(pg)
            await outbox_worker.enqueue_async(other, update("second"))
    finally:
        await other.close()
    assert await pg.fetchval("SELECT count(*) FROM outbox.messages") == 2


async def test_a_producer_role_still_enqueues(database_url: str, pg: asyncpg.Connection) -> None:
    """outbox_producer enqueues, and notifies, with no privilege on the throttle's sequence."""
    await _forget_last_wakeup(pg)
    async with pg.transaction():
        await pg.execute("SET LOCAL ROLE outbox_producer")
        await outbox_worker.enqueue_async(pg, update("producer"))
        await pg.fetchval("SELECT outbox.enqueue($1::jsonb)", _body("producer-sql"))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pg.fetchval("SELECT setval('outbox.last_wakeup_ms', 0)")
    assert await pg.fetchval("SELECT count(*) FROM outbox.messages") == 0


# --- the worker's side: an idle worker is woken (or polls) within the documented bound ---------


async def _worker_is_idle(pg: asyncpg.Connection) -> bool:
    # The worker's pool has been quiet a while and its LISTEN (if any) has started: it is asleep.
    return bool(
        await pg.fetchval(
            "SELECT count(*) > 0 AND bool_and(state = 'idle' "
            "AND now() - state_change > interval '300 ms') FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'outbox-worker%'"
        )
    )


async def _acknowledged_within(pg: asyncpg.Connection, message_id: int, seconds: float) -> None:
    async def acknowledged() -> bool:
        state = await pg.fetchval("SELECT state FROM outbox.messages WHERE id = $1", message_id)
        return bool(state == "acknowledged")

    await wait_for(acknowledged, timeout=seconds, message=f"acknowledged within {seconds} s")


# How long a test waits for the delivery: generous for a busy machine (the second the README
# promises is not asserted; it is no test of behaviour on a machine other programs share).
DELIVERY_DEADLINE_S = 30.0


async def test_idle_listening_worker_delivers_a_lone_enqueue_without_waiting_for_its_poll(
    database_url: str, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """A worker that polls once an hour, idle, is woken by a single new update and acknowledges it long before its poll."""
    async with running_worker(database_url, standin.url, poll_interval=timedelta(hours=1)):
        await wait_for(lambda: _worker_is_idle(pg), timeout=10, message="an idle worker")
        await _forget_last_wakeup(pg)  # as after 10 s without enqueues
        message_id = await outbox_worker.enqueue_async(
            pg, update("after-idle"), allow_autocommit=True
        )
        # Only the enqueue's notification can wake it this side of the hourly poll.
        await _acknowledged_within(pg, message_id, DELIVERY_DEADLINE_S)


async def test_idle_poll_only_worker_finds_a_new_update_by_polling(
    database_url: str, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """Without LISTEN an idle worker finds a new update by its poll: nothing else can wake it."""
    poll = timedelta(seconds=1)
    async with running_worker(database_url, standin.url, listen=False, poll_interval=poll):
        await wait_for(lambda: _worker_is_idle(pg), timeout=10, message="an idle worker")
        message_id = await outbox_worker.enqueue_async(
            pg, update("polled-after-idle"), allow_autocommit=True
        )
        await _acknowledged_within(pg, message_id, DELIVERY_DEADLINE_S)

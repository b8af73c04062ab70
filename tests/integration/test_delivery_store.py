"""The worker's statements on real PostgreSQL: claims bounded by bytes, unsendable rows, writes
that no row can break, the database's clock, and the row-by-row fallback for a refused batch."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import MutableMapping
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
from structlog.testing import capture_logs

import outbox_worker
from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.models import LeaseToken, Message, MessageId, Settlement, State
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.store import connection
from outbox_worker.store.connection import connect, directly_connected
from outbox_worker.store.delivery import PostgresStore
from tests.cases import update
from tests.integration.rows import drop_row_constraints
from tests.pgbouncer import pgbouncer
from tests.proxy import Proxy, through, to_database

LEASE = timedelta(seconds=30)


def settlement(message: Message, state: State, **changes: object) -> Settlement:
    """A settlement of ``message`` into ``state`` (a retry after 60 s when pending)."""
    values: dict[str, object] = {
        "message_id": message.id,
        "lease_token": message.lease_token,
        "state": state,
        "attempt_spent": True,
        "delay": timedelta(seconds=60) if state is State.PENDING else None,
        "status": 200 if state is State.ACKNOWLEDGED else 503,
        "error": None if state is State.ACKNOWLEDGED else "503 Service Unavailable",
        "latency_s": 0.01,
    }
    values.update(changes)
    return Settlement(**values)  # type: ignore[arg-type]


async def test_claim_stops_at_the_byte_budget(pg: asyncpg.Connection, store: PostgresStore) -> None:
    """A claim takes rows in due order while their bodies fit in ``max_bytes``."""
    for i in range(10):
        await outbox_worker.enqueue_async(
            pg, update(f"k{i}", padding="x" * 100_000), allow_autocommit=True
        )
    claimed = await store.claim(10, LEASE, 350_000)
    assert len(claimed) == 3
    assert sum(len(m.body) for m in claimed) <= 350_000
    assert [json.loads(m.body)["customer"]["customerId"] for m in claimed] == ["k0", "k1", "k2"]
    rest = await store.claim(10, LEASE, 10 * MAX_PAYLOAD_BYTES)
    assert len(rest) == 7


async def test_unsendable_rows_are_claimed_without_their_body(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """Rows that are not an object or are past the size limit come back empty, saying why."""
    big = json.dumps(update("big", padding="x" * MAX_PAYLOAD_BYTES))
    await drop_row_constraints(pg)
    for payload in ('"text"', "[1, 2]", "42", big):
        await pg.execute("INSERT INTO outbox.messages (payload) VALUES ($1::jsonb)", payload)
    claimed = await store.claim(10, LEASE, 2 * MAX_PAYLOAD_BYTES)
    assert [m.body for m in claimed] == [b""] * 4
    reasons = [m.unsendable or "" for m in claimed]
    assert [r.split(",")[0] for r in reasons[:3]] == [
        "the stored payload is a JSON string",
        "the stored payload is a JSON array",
        "the stored payload is a JSON number",
    ]
    assert reasons[3].startswith("the stored payload is ")
    assert reasons[3].endswith(f"bytes, over the limit of {MAX_PAYLOAD_BYTES}")


async def test_claim_reports_the_age_on_the_database_clock(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """A message's age at claim is the database's now() minus its creation (or last requeue)."""
    message_id = await outbox_worker.enqueue_async(pg, update("old"), allow_autocommit=True)
    await pg.execute(
        "UPDATE outbox.messages SET created_at = now() - interval '3 hours' WHERE id = $1",
        message_id,
    )
    [message] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    assert timedelta(hours=3) <= message.age < timedelta(hours=3, minutes=1)


async def test_retry_delay_is_added_to_the_database_now(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """A retry's next due time is the database's now() plus the delay the policy chose."""
    await outbox_worker.enqueue_async(pg, update("later"), allow_autocommit=True)
    [message] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    assert await store.settle([settlement(message, State.PENDING)]) == 1
    # Measured from the write's own now(), which its history entry records: the time this test
    # takes to read the row back (any, on a busy machine) does not enter.
    due_after = await pg.fetchval(
        "SELECT extract(epoch FROM available_at - (history -> -1 ->> 'at')::timestamptz)"
        " FROM outbox.messages"
    )
    assert due_after == 60


async def test_writes_survive_whatever_another_service_left_in_a_row(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """A history that is not an array and an attempt count at the integer limit break no write."""
    await drop_row_constraints(pg)
    for key, history, attempts in (("h", "null", 0), ("o", '{"a": 1}', 0), ("n", "[]", 2**31 - 1)):
        await pg.execute(
            "INSERT INTO outbox.messages (payload, history, attempts)"
            " VALUES ($1::jsonb, $2::jsonb, $3)",
            json.dumps(update(key)),
            history,
            attempts,
        )
    claimed = await store.claim(10, LEASE, MAX_PAYLOAD_BYTES)
    states = [State.ACKNOWLEDGED, State.PENDING, State.PENDING]
    applied = await store.settle([settlement(m, s) for m, s in zip(claimed, states, strict=True)])
    assert applied == 3
    rows = await pg.fetch("SELECT history, attempts FROM outbox.messages ORDER BY id")
    assert [len(json.loads(r["history"])) for r in rows] == [1, 1, 1]
    assert [r["attempts"] for r in rows] == [1, 1, 2**31 - 1]


async def test_a_refused_statement_is_statement_rejected_naming_no_value(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """When the database refuses a write, the error names its class and SQLSTATE, not the value."""
    await outbox_worker.enqueue_async(pg, update("refused"), allow_autocommit=True)
    await pg.execute(
        """
        CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused: %', NEW.payload USING ERRCODE = 'check_violation'; END $$;
        """
    )
    await pg.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE OF state ON outbox.messages"
        " FOR EACH ROW WHEN (NEW.state = 'acknowledged') EXECUTE FUNCTION pg_temp.refuse()"
    )
    [message] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    with pytest.raises(StatementRejected) as caught:
        await store.settle([settlement(message, State.ACKNOWLEDGED)])
    assert caught.value.sqlstate == "23514"
    assert "customerId" not in str(caught.value)
    assert await store.dead_letter_unwritable(settlement(message, State.ACKNOWLEDGED), "why") == 1
    row = await pg.fetchrow("SELECT state, last_error, lease_token FROM outbox.messages")
    assert row is not None
    assert (row["state"], row["last_error"], row["lease_token"]) == ("dead", "why", None)


async def test_dead_letter_unwritable_is_guarded_by_the_lease(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """The last-resort write applies only to a row still held under its lease token."""
    await outbox_worker.enqueue_async(pg, update("guarded"), allow_autocommit=True)
    [message] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    stranger = Message(
        id=MessageId(message.id),
        body=b"",
        attempts=0,
        age=timedelta(0),
        lease_token=LeaseToken(uuid4()),
    )
    assert await store.dead_letter_unwritable(settlement(stranger, State.DEAD), "no") == 0
    assert await pg.fetchval("SELECT state FROM outbox.messages") == "pending"


async def test_a_row_at_the_attempts_bound_is_still_written(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """A row at the schema's attempt bound (1,000,000) is settled without breaking the check."""
    await pg.execute(
        "INSERT INTO outbox.messages (payload, attempts) VALUES ($1::jsonb, 1000000)",
        json.dumps(update("bound")),
    )
    [message] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    assert await store.settle([settlement(message, State.PENDING)]) == 1
    assert await pg.fetchval("SELECT attempts FROM outbox.messages") == 1000000
    await pg.execute("UPDATE outbox.messages SET available_at = now()")  # due again at once
    [again] = await store.claim(1, LEASE, MAX_PAYLOAD_BYTES)
    assert await store.settle([settlement(again, State.ACKNOWLEDGED)]) == 1
    row = await pg.fetchrow("SELECT state, attempts FROM outbox.messages")
    assert row is not None
    assert (row["state"], row["attempts"]) == ("acknowledged", 1000000)


async def test_seconds_until_due_is_none_when_nothing_is_pending(
    pg: asyncpg.Connection, store: PostgresStore
) -> None:
    """An empty queue has no due time (so an idle worker sleeps a whole poll interval)."""
    assert await store.seconds_until_due() is None
    await outbox_worker.enqueue_async(
        pg,
        {"timestamp": 1_764_000_000_000, "registration": {"success": True}},
        allow_autocommit=True,
    )
    assert await store.seconds_until_due() == 0.0


def _over_unix_socket(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.hostname or "host=/" in parts.query


async def _opened_event(url: str) -> MutableMapping[str, Any]:
    """Open and close a store on ``url``; the ``store.opened`` event it logged."""
    store = PostgresStore(url, history_cap=20)
    with capture_logs() as logs:
        await store.open()
    await store.close()
    [opened] = [e for e in logs if e["event"] == "store.opened"]
    return opened


async def test_a_connection_straight_to_postgresql_keeps_prepared_statements(
    database_url: str,
) -> None:
    """Straight to the server, over TCP or its Unix socket, the store caches statements."""
    conn = await connect(database_url)
    try:
        assert await directly_connected(conn) is True
    finally:
        await conn.close()
    opened = await _opened_event(database_url)
    assert (opened["direct_connection"], opened["statement_cache"]) == (True, True)


async def test_the_unix_socket_probe_needs_the_postmaster_at_the_other_end(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Unix socket counts as direct only when its listener is the backend's parent."""
    if not _over_unix_socket(database_url):
        pytest.skip("the test database is reached over TCP")
    conn = await connect(database_url)
    try:
        monkeypatch.setattr(connection, "_parent_pid", lambda pid: os.getpid())
        assert await directly_connected(conn) is False
        monkeypatch.setattr(connection, "_parent_pid", lambda pid: None)  # /proc unreadable
        assert await directly_connected(conn) is False
    finally:
        await conn.close()


async def test_the_unix_socket_of_pgbouncer_is_not_taken_for_postgresql(
    database_url: str,
) -> None:
    """Through PgBouncer's Unix socket the listener is PgBouncer: statements stay unprepared."""
    with pgbouncer(database_url, pool_size=2, unix_socket=True) as bouncer_url:
        conn = await connect(bouncer_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await directly_connected(conn) is False
        finally:
            await conn.close()
        opened = await _opened_event(bouncer_url)
        assert (opened["direct_connection"], opened["statement_cache"]) == (False, False)


async def test_a_url_naming_several_hosts_keeps_statements_unprepared(database_url: str) -> None:
    """A URL naming several hosts is never taken as direct: the pool might not take the probe's
    route."""
    parts = urlsplit(database_url)
    if _over_unix_socket(database_url):
        hosts = parse_qs(parts.query)["host"][0]
        query = urlencode({**parse_qs(parts.query), "host": f"{hosts},{hosts}"}, doseq=True)
        several = urlunsplit(parts._replace(query=query))
    else:
        server = parts.netloc.rsplit("@", 1)[-1]
        several = urlunsplit(parts._replace(netloc=f"{parts.netloc},{server}"))
    opened = await _opened_event(several)
    assert (opened["direct_connection"], opened["statement_cache"]) == (False, False)


async def test_through_pgbouncer_the_store_prepares_nothing_and_keeps_working(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """Through a transaction-mode PgBouncer the probe sees the pooler: no cache, claims work."""
    with pgbouncer(database_url, pool_size=2) as bouncer_url:
        conn = await connect(bouncer_url)
        try:
            assert await directly_connected(conn) is False
        finally:
            await conn.close()
        opened = await _opened_event(bouncer_url)
        assert (opened["direct_connection"], opened["statement_cache"]) == (False, False)

        store = PostgresStore(bouncer_url, history_cap=20)
        await store.open()
        try:
            for i in range(30):
                await outbox_worker.enqueue_async(pg, update(f"b{i}"), allow_autocommit=True)
            settled = 0
            for _ in range(10):  # the same statements many times, over shared server connections
                claimed = await store.claim(3, LEASE, 10 * MAX_PAYLOAD_BYTES)
                settled += await store.settle([settlement(m, State.ACKNOWLEDGED) for m in claimed])
        finally:
            await store.close()
    assert settled == 30


async def test_a_read_only_server_is_unavailable_not_a_refused_statement(
    pg: asyncpg.Connection, database_url: str, store: PostgresStore
) -> None:
    """A server that takes no writes (a demoted primary, SQLSTATE 25006) makes claims and writes DatabaseUnavailable, so no message or attempt pays for it; the start-up check names it."""
    await outbox_worker.enqueue_async(pg, update("k-read-only"), allow_autocommit=True)
    database = urlsplit(database_url).path.lstrip("/")
    await pg.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
    await store.close()  # new connections take the database's new default
    await store.open()
    with pytest.raises(DatabaseUnavailable, match=r"is read-only .* waiting for a primary"):
        await store.claim(10, LEASE, MAX_PAYLOAD_BYTES)
    conn = await connect(database_url)
    try:
        with pytest.raises(DatabaseUnavailable, match="is read-only: waiting for a primary"):
            await connection.ensure_writable(conn, database_url)
    finally:
        await conn.close()
    await pg.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
    claimed = await store.claim(10, LEASE, MAX_PAYLOAD_BYTES)  # the pool connected afresh
    assert len(claimed) == 1


async def test_a_tcp_connection_finds_a_dead_path_on_its_own(database_url: str) -> None:
    """Over TCP the worker's connections carry keepalives and TCP_USER_TIMEOUT of the database timeout, so the kernel breaks a silently dead path instead of leaving it hanging."""
    proxy = Proxy(to_database(database_url))  # TCP even when the test server is on a socket
    await proxy.start()
    conn = await connect(through(database_url, proxy))
    try:
        await connection.detect_dead_peer(conn, timeout_s=4.5)
        sock = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4500
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 4
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
        await proxy.stop()


async def test_a_canceled_statement_is_unavailable_not_a_fault_of_its_rows(
    pg: asyncpg.Connection, database_url: str
) -> None:
    """A statement canceled by the server (statement_timeout, a cancel that arrived late) says nothing about its rows: DatabaseUnavailable, retried, never a dead letter."""
    conn = await connect(database_url)
    try:
        await conn.execute("SET statement_timeout = '50ms'")
        with (
            pytest.raises(DatabaseUnavailable, match="QueryCanceledError"),
            connection.translate_errors(database_url),
        ):
            await conn.execute("SELECT pg_sleep(5)")
    finally:
        await conn.close()

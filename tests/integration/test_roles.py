"""Each outbox role, connected as, can do its job and nothing more (revision 0004's grants)."""

from __future__ import annotations

import json
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import create_engine

import outbox_worker
from outbox_worker.models import State
from outbox_worker.settings.config import sqlalchemy_url
from outbox_worker.store.delivery import PostgresStore
from tests.integration.conftest import LoginAs
from tests.integration.rows import SIMPLE_PAYLOAD, insert_message
from tests.integration.test_delivery_store import settlement
from tests.processes import cli

DENIED = asyncpg.InsufficientPrivilegeError


async def _connect(url: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(url)
    return conn


async def test_producer_enqueues_through_sql_and_python(login_as: LoginAs) -> None:
    """A producer enqueues with outbox.enqueue and with the Python API (asyncpg and SQLAlchemy)."""
    url = await login_as("outbox_producer")
    conn = await _connect(url)
    try:
        first = await conn.fetchval("SELECT outbox.enqueue($1::jsonb)", json.dumps(SIMPLE_PAYLOAD))
        second = await outbox_worker.enqueue_async(
            conn, SIMPLE_PAYLOAD, dedup_key="k-1", allow_autocommit=True
        )
        again = await outbox_worker.enqueue_async(
            conn, SIMPLE_PAYLOAD, dedup_key="k-1", allow_autocommit=True
        )
    finally:
        await conn.close()
    engine = create_engine(sqlalchemy_url(url, "psycopg"))
    try:
        with engine.begin() as sync_conn:
            third = outbox_worker.enqueue(sync_conn, SIMPLE_PAYLOAD)
    finally:
        engine.dispose()
    assert first < second < third
    assert again == second


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM outbox.messages",
        "INSERT INTO outbox.messages (payload, state) VALUES ('{}', 'acknowledged')",
        "UPDATE outbox.messages SET state = 'dead'",
        "DELETE FROM outbox.messages",
        "SELECT outbox.validate_update('{}')",
        "SELECT outbox.history_push('[]', '{}', 5)",
    ],
)
async def test_producer_has_no_privilege_on_the_table(login_as: LoginAs, statement: str) -> None:
    """A producer cannot read or write outbox.messages, nor call internal functions."""
    conn = await _connect(await login_as("outbox_producer"))
    try:
        with pytest.raises(DENIED):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_producer_cannot_plant_a_malformed_row(login_as: LoginAs) -> None:
    """outbox.insert_message, which skips the full rules, still refuses a body that is no update."""
    conn = await _connect(await login_as("outbox_producer"))
    try:
        with pytest.raises(asyncpg.InvalidParameterValueError, match="boolean registration"):
            await conn.fetchval("SELECT outbox.insert_message('[1, 2]'::jsonb)")
    finally:
        await conn.close()


async def test_worker_claims_settles_and_releases(
    pg: asyncpg.Connection, login_as: LoginAs
) -> None:
    """A worker login runs the production store: claim, settle and release."""
    for key in ("a", "b"):
        await outbox_worker.enqueue_async(
            pg, {**SIMPLE_PAYLOAD, "customer": {"customerId": key}}, allow_autocommit=True
        )
    store = PostgresStore(await login_as("outbox_worker"), history_cap=5)
    await store.open()
    try:
        first, second = await store.claim(2, timedelta(seconds=30), 1 << 20)
        assert await store.settle([settlement(first, State.ACKNOWLEDGED)]) == 1
        assert await store.release([second]) == 1
        assert await store.reserve_send_time(0.25) >= 0  # the fleet rate limit's schedule
        assert await store.purge_expired(State.ACKNOWLEDGED, timedelta(days=7), 10) == 0
    finally:
        await store.close()
    states = await pg.fetch("SELECT state, lease_token FROM outbox.messages ORDER BY id")
    assert [(r["state"], r["lease_token"]) for r in states] == [
        ("acknowledged", None),
        ("pending", None),
    ]


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE outbox.planted (id int)",
        "ALTER TABLE outbox.messages DROP CONSTRAINT messages_payload_object",
        "DELETE FROM outbox.messages",
        "UPDATE outbox.messages SET payload = '{}'",
        "INSERT INTO outbox.messages (payload) VALUES ('{}')",
        "UPDATE outbox.alembic_version SET version_num = '0001'",
    ],
)
async def test_worker_has_no_ddl_and_no_other_writes(login_as: LoginAs, statement: str) -> None:
    """A worker cannot change the schema, delete rows, rewrite payloads or insert rows."""
    conn = await _connect(await login_as("outbox_worker"))
    try:
        with pytest.raises((DENIED, asyncpg.exceptions.DependentObjectsStillExistError)):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_operator_lists_requeues_and_purges(
    pg: asyncpg.Connection, login_as: LoginAs
) -> None:
    """An operator login runs dead list, requeue and purge from the CLI."""
    dead = await insert_message(pg, state="dead")
    await insert_message(pg, state="acknowledged", ago=timedelta(days=10))
    url = await login_as("outbox_operator")
    listed = cli("dead", "list", "--json", db=url)
    assert listed.code == 0, listed.err
    assert [m["id"] for m in listed.json()["messages"]] == [dead]
    requeued = cli("requeue", "--id", str(dead), "--yes", db=url)
    assert requeued.code == 0, requeued.err
    assert "requeued 1 message(s)" in requeued.out
    purged = cli("purge", "--older-than", "7d", "--yes", db=url)
    assert purged.code == 0, purged.err
    assert await pg.fetchval("SELECT count(*) FROM outbox.messages") == 1


async def test_operator_cannot_insert_or_rewrite_payloads(login_as: LoginAs) -> None:
    """An operator cannot insert rows or change what a message will send."""
    conn = await _connect(await login_as("outbox_operator"))
    try:
        with pytest.raises(DENIED):
            await conn.execute("INSERT INTO outbox.messages (payload) VALUES ('{}')")
        with pytest.raises(DENIED):
            await conn.execute("UPDATE outbox.messages SET payload = '{}'")
    finally:
        await conn.close()


async def test_public_may_not_execute_outbox_functions(pg: asyncpg.Connection) -> None:
    """PUBLIC holds EXECUTE on no outbox function; the producer functions (with and without a
    trace context) and retention (of messages and of audit rows) run as their owner with a pinned
    search_path."""
    public = await pg.fetch(
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'outbox' AND has_function_privilege('public', p.oid, 'EXECUTE')"
    )
    assert public == []
    definers = await pg.fetch(
        "SELECT proname, proconfig FROM pg_proc WHERE prosecdef "
        "AND pronamespace = 'outbox'::regnamespace ORDER BY proname"
    )
    assert [(r["proname"], r["proconfig"]) for r in definers] == [
        ("enqueue", ["search_path=pg_catalog, outbox, pg_temp"]),
        ("enqueue", ["search_path=pg_catalog, outbox, pg_temp"]),
        ("insert_message", ["search_path=pg_catalog, outbox, pg_temp"]),
        ("insert_message", ["search_path=pg_catalog, outbox, pg_temp"]),
        ("purge_expired", ["search_path=pg_catalog, outbox, pg_temp"]),
        ("purge_expired_audit", ["search_path=pg_catalog, outbox, pg_temp"]),
    ]

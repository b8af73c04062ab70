"""Enqueue from every supported connection kind, and from raw SQL, inside the caller's transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import outbox_worker
from outbox_worker.payload.model import parse_update
from outbox_worker.settings.config import sqlalchemy_url
from tests.cases import INVALID_CASES, VALID_EXAMPLES
from tests.processes import free_port
from tests.proxy import Proxy, through, to_database
from tests.strategies import valid_updates
from tests.waiting import wait_for

EXAMPLE = VALID_EXAMPLES[0][1]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A sync SQLAlchemy engine (psycopg 3) on this test's database."""
    eng = create_engine(sqlalchemy_url(database_url, "psycopg"))
    yield eng
    eng.dispose()


async def _lock_waiters(pg: asyncpg.Connection, expected: int) -> bool:
    waiting = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting == expected)


async def _stored(pg: asyncpg.Connection) -> list[tuple[int, str, str]]:
    rows = await pg.fetch("SELECT id, payload::text, state FROM outbox.messages ORDER BY id")
    return [(r["id"], r["payload"], r["state"]) for r in rows]


async def test_committed_enqueue_is_stored_as_pending(
    engine: Engine, pg: asyncpg.Connection
) -> None:
    """An update enqueued in a transaction that commits is in outbox.messages as pending."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (name text)"))
        conn.execute(text("INSERT INTO users VALUES ('ada')"))
        message_id = outbox_worker.enqueue(conn, EXAMPLE)
    rows = await _stored(pg)
    assert [(r[0], r[2]) for r in rows] == [(message_id, "pending")]
    assert json.loads(rows[0][1]) == parse_update(EXAMPLE).to_wire()


async def test_rolled_back_enqueue_leaves_nothing(engine: Engine, pg: asyncpg.Connection) -> None:
    """An update enqueued in a transaction that rolls back is never stored."""
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE users (name text)"))
        conn.commit()
        with conn.begin():
            conn.execute(text("INSERT INTO users VALUES ('ada')"))
            outbox_worker.enqueue(conn, EXAMPLE)
            conn.rollback()
    assert await _stored(pg) == []
    assert await pg.fetchval("SELECT count(*) FROM users") == 0


async def test_every_connection_kind_stores_identical_payloads(
    engine: Engine, database_url: str, pg: asyncpg.Connection
) -> None:
    """Session, Connection, AsyncConnection, AsyncSession, asyncpg and raw SQL store the same bytes."""
    with engine.begin() as conn:
        outbox_worker.enqueue(conn, EXAMPLE)
    with Session(engine) as session, session.begin():
        outbox_worker.enqueue(session, EXAMPLE)
    async_engine = create_async_engine(sqlalchemy_url(database_url))
    try:
        async with async_engine.begin() as aconn:
            await outbox_worker.enqueue_async(aconn, EXAMPLE)
        async with AsyncSession(async_engine) as asession, asession.begin():
            await outbox_worker.enqueue_async(asession, EXAMPLE)
    finally:
        await async_engine.dispose()
    async with pg.transaction():
        await outbox_worker.enqueue_async(pg, EXAMPLE)
    await pg.execute("SELECT outbox.enqueue($1::jsonb)", json.dumps(EXAMPLE))
    payloads = {r[1] for r in await _stored(pg)}
    assert len(await _stored(pg)) == 6
    assert len(payloads) == 1, payloads


async def test_enqueue_does_not_commit(database_url: str, pg: asyncpg.Connection) -> None:
    """enqueue_async joins the caller's open transaction: invisible to others until commit."""
    other = await asyncpg.connect(database_url)
    try:
        tx = other.transaction()
        await tx.start()
        await outbox_worker.enqueue_async(other, EXAMPLE)
        assert await _stored(pg) == []
        await tx.commit()
        assert len(await _stored(pg)) == 1
    finally:
        await other.close()


async def test_same_dedup_key_returns_first_id(pg: asyncpg.Connection) -> None:
    """The same dedup_key twice yields the first message's id and one row."""
    async with pg.transaction():
        first = await outbox_worker.enqueue_async(pg, EXAMPLE, dedup_key="signup-42")
    async with pg.transaction():
        second = await outbox_worker.enqueue_async(pg, VALID_EXAMPLES[1][1], dedup_key="signup-42")
    third = await pg.fetchval("SELECT outbox.enqueue($1::jsonb, 'signup-42')", json.dumps(EXAMPLE))
    assert first == second == third
    assert len(await _stored(pg)) == 1


async def test_enqueues_without_a_dedup_key_each_store_a_row(pg: asyncpg.Connection) -> None:
    """The same update twice without a dedup_key, through either API, is two rows with two ids."""
    first = await outbox_worker.enqueue_async(pg, EXAMPLE, allow_autocommit=True)
    second = await pg.fetchval("SELECT outbox.enqueue($1::jsonb)", json.dumps(EXAMPLE))
    third = await outbox_worker.enqueue_async(pg, EXAMPLE, allow_autocommit=True)
    assert len({first, second, third}) == 3
    assert len(await _stored(pg)) == 3


async def test_concurrent_enqueues_of_one_dedup_key_store_one_row(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """Eight connections enqueueing one key at once, committing together, store one row."""
    conns = [await asyncpg.connect(database_url) for _ in range(8)]
    try:
        txs = [c.transaction() for c in conns]
        for tx in txs:
            await tx.start()

        async def one(conn: asyncpg.Connection) -> int:
            return await outbox_worker.enqueue_async(conn, EXAMPLE, dedup_key="race")

        # The first insert holds the key's index entry; the others wait on it inside enqueue.
        tasks = [asyncio.create_task(one(c)) for c in conns]
        done, _ = await asyncio.wait(tasks, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1
        await wait_for(lambda: _lock_waiters(pg, 7), timeout=30)
        await txs[tasks.index(next(iter(done)))].commit()
        ids = await asyncio.gather(*tasks)
        for tx, task in zip(txs, tasks, strict=True):
            if task not in done:
                await tx.commit()
    finally:
        for c in conns:
            await c.close()
    assert len(set(ids)) == 1
    assert [r[0] for r in await _stored(pg)] == [ids[0]]


async def test_dedup_key_of_a_rolled_back_enqueue_is_free_again(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """If the first holder of a key rolls back, the waiting enqueue stores its own row."""
    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await outbox_worker.enqueue_async(a, EXAMPLE, dedup_key="k")
        waiting = asyncio.create_task(outbox_worker.enqueue_async(b, EXAMPLE, dedup_key="k"))
        await ta.rollback()
        b_id = await asyncio.wait_for(waiting, 10)
        await tb.commit()
    finally:
        await a.close()
        await b.close()
    assert [r[0] for r in await _stored(pg)] == [b_id]


@pytest.mark.parametrize(
    ("case", "payload", "path"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
async def test_invalid_update_is_refused_by_python_and_sql(
    pg: asyncpg.Connection, case: str, payload: Any, path: str
) -> None:
    """Python and SQL both refuse a bad update, name the same path, and store nothing."""
    with pytest.raises(outbox_worker.InvalidUpdate) as python_error:
        async with pg.transaction():
            await outbox_worker.enqueue_async(pg, payload)
    assert path in python_error.value.paths
    with pytest.raises(asyncpg.InvalidParameterValueError) as sql_error:
        await pg.fetchval("SELECT outbox.enqueue($1::jsonb)", json.dumps(payload))
    assert f"{path}:" in str(sql_error.value)
    assert await _stored(pg) == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(update=valid_updates())
def test_any_valid_update_survives_store_and_load(engine: Engine, update: dict[str, Any]) -> None:
    """serialize -> store -> load gives back the serialized update unchanged, from Python and SQL."""
    wire = parse_update(update).to_wire()
    with engine.begin() as conn:
        from_python = outbox_worker.enqueue(conn, update)
        from_sql = conn.execute(
            text("SELECT outbox.enqueue(CAST(:p AS jsonb))"), {"p": json.dumps(update)}
        ).scalar_one()
        stored: dict[int, Any] = dict(
            conn.execute(
                text("SELECT id, payload FROM outbox.messages WHERE id IN (:a, :b)"),
                {"a": from_python, "b": from_sql},
            ).all()
        )
        conn.execute(text("DELETE FROM outbox.messages"))
    assert stored[from_python] == wire
    assert stored[from_sql] == wire


async def test_sql_enqueue_stores_an_exponent_timestamp_as_the_integer(
    pg: asyncpg.Connection,
) -> None:
    """outbox.enqueue of '{"timestamp": 1e12, ...}' stores (and so sends) 1000000000000."""
    await pg.fetchval(
        "SELECT outbox.enqueue($1::jsonb)", '{"timestamp": 1e12, "registration": {"success": true}}'
    )
    assert [r[1] for r in await _stored(pg)] == [
        '{"timestamp": 1000000000000, "registration": {"success": true}}'
    ]


async def test_sql_enqueue_refuses_a_10000_deep_payload_with_22023(pg: asyncpg.Connection) -> None:
    """A 10,000-deep payload raises invalid_parameter_value naming "$", not 54001, and stores nothing."""
    text = '{"timestamp": 1512828988826, "nest": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(asyncpg.InvalidParameterValueError) as error:
        await pg.fetchval("SELECT outbox.enqueue($1::jsonb)", text)
    assert "$: nests objects and arrays more than 32 levels deep" in str(error.value)
    assert await _stored(pg) == []


async def test_enqueue_through_a_multi_host_url_finds_the_server_that_takes_writes(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """With the URLs the README gives for failover (a host that is down listed first, target_session_attrs=read-write), enqueue works from asyncpg, libpq (psycopg 3, through the SQL API) and SQLAlchemy on either driver."""
    proxy = Proxy(to_database(database_url))  # a TCP address even for a Unix-socket server
    await proxy.start()
    try:
        live = urlsplit(through(database_url, proxy))
        user, database = live.username, live.path
        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{proxy.port}"
        libpq = f"postgresql://{user}@{hosts}{database}?target_session_attrs=read-write"
        query = "&".join(f"host={h}" for h in hosts.split(","))
        alchemy = f"postgresql+{{}}://{user}@{database}?{query}&target_session_attrs=read-write"

        conn = await asyncpg.connect(libpq)
        try:
            async with conn.transaction():
                await outbox_worker.enqueue_async(conn, EXAMPLE, dedup_key="asyncpg")
        finally:
            await conn.close()
        # The sync drivers run in a thread: the proxy serves from this event loop.
        await asyncio.to_thread(_enqueue_sync, libpq, alchemy.format("psycopg"))
        async_engine = create_async_engine(alchemy.format("asyncpg"))
        async with async_engine.begin() as async_connection:
            await outbox_worker.enqueue_async(async_connection, EXAMPLE, dedup_key="sa-asyncpg")
        await async_engine.dispose()
    finally:
        await proxy.stop()
    keys = await pg.fetch("SELECT dedup_key FROM outbox.messages ORDER BY id")
    assert [r["dedup_key"] for r in keys] == [
        "asyncpg",
        "psycopg",
        "sqlalchemy-psycopg",
        "sa-asyncpg",
    ]


def _enqueue_sync(libpq_url: str, sqlalchemy_url: str) -> None:
    with psycopg.connect(libpq_url) as conn:  # libpq: the SQL API, as any language would
        conn.execute("SELECT outbox.enqueue(%s::jsonb, %s)", (json.dumps(EXAMPLE), "psycopg"))
    engine = create_engine(sqlalchemy_url)
    try:
        with engine.begin() as connection:
            outbox_worker.enqueue(connection, EXAMPLE, dedup_key="sqlalchemy-psycopg")
    finally:
        engine.dispose()

"""Enqueue through psycopg 3 and psycopg2, and the refusal to enqueue outside a transaction."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any

import asyncpg
import psycopg
import psycopg2
import psycopg2.extras
import pytest
from opentelemetry.sdk.trace import TracerProvider
from psycopg.rows import dict_row, namedtuple_row
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

import outbox_worker
from outbox_worker.payload import parse_update
from outbox_worker.settings.config import sqlalchemy_url
from tests.cases import INVALID_CASES, VALID_EXAMPLES

EXAMPLE = VALID_EXAMPLES[0][1]
WIRE = parse_update(EXAMPLE).to_wire()

# A connection the test commits and rolls back, and what it hands to enqueue (itself or a cursor).
Opened = tuple[Any, Any]
SYNC: dict[str, Callable[[str], Opened]] = {
    "psycopg Connection": lambda url: (c := psycopg.connect(url), c),
    "psycopg Cursor": lambda url: (c := psycopg.connect(url), c.cursor()),
    "psycopg Cursor, dict rows": lambda url: (
        c := psycopg.connect(url),
        c.cursor(row_factory=dict_row),
    ),
    "psycopg Connection, namedtuple rows": lambda url: (
        c := psycopg.connect(url, row_factory=namedtuple_row),
        c,
    ),
    "psycopg ClientCursor": lambda url: (c := psycopg.connect(url), psycopg.ClientCursor(c)),
    "psycopg RawCursor": lambda url: (c := psycopg.connect(url), psycopg.RawCursor(c)),
    "psycopg ServerCursor": lambda url: (c := psycopg.connect(url), c.cursor(name="outbox")),
    "psycopg2 connection": lambda url: (c := psycopg2.connect(url), c),
    "psycopg2 cursor": lambda url: (c := psycopg2.connect(url), c.cursor()),
    "psycopg2 RealDictCursor": lambda url: (
        c := psycopg2.connect(url),
        c.cursor(cursor_factory=psycopg2.extras.RealDictCursor),
    ),
}


async def _opened_async(url: str, target: Callable[[Any], Any]) -> Opened:
    conn = await psycopg.AsyncConnection.connect(url)
    return conn, target(conn)


ASYNC: dict[str, Callable[[Any], Any]] = {
    "psycopg AsyncConnection": lambda c: c,
    "psycopg AsyncCursor": lambda c: c.cursor(),
    "psycopg AsyncCursor, dict rows": lambda c: c.cursor(row_factory=dict_row),
    "psycopg AsyncRawCursor": lambda c: psycopg.AsyncRawCursor(c),
}


async def _stored(pg: asyncpg.Connection) -> list[tuple[int, Any]]:
    rows = await pg.fetch("SELECT id, payload::text FROM outbox.messages ORDER BY id")
    return [(r["id"], json.loads(r["payload"])) for r in rows]


@pytest.mark.parametrize("kind", SYNC)
async def test_sync_driver_joins_the_callers_transaction(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """enqueue on this connection or cursor stores the update when the caller commits, not before,
    and nothing when the caller rolls back."""
    conn, target = SYNC[kind](database_url)
    try:
        kept = outbox_worker.enqueue(target, EXAMPLE, dedup_key="kept")
        assert await _stored(pg) == []
        conn.commit()
        outbox_worker.enqueue(target, EXAMPLE, dedup_key="rolled-back")
        conn.rollback()
    finally:
        if target is not conn:
            target.close()
        conn.close()
    assert await _stored(pg) == [(kept, WIRE)]


@pytest.mark.parametrize("kind", ASYNC)
async def test_async_driver_joins_the_callers_transaction(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """enqueue_async on this connection or cursor stores the update when the caller commits, not
    before, and nothing when the caller rolls back."""
    conn, target = await _opened_async(database_url, ASYNC[kind])
    try:
        kept = await outbox_worker.enqueue_async(target, EXAMPLE, dedup_key="kept")
        assert await _stored(pg) == []
        await conn.commit()
        await outbox_worker.enqueue_async(target, EXAMPLE, dedup_key="rolled-back")
        await conn.rollback()
    finally:
        await conn.close()
    assert await _stored(pg) == [(kept, WIRE)]


@pytest.mark.parametrize("kind", ["psycopg Cursor", "psycopg2 cursor"])
async def test_an_invalid_update_is_refused_through_psycopg(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """A bad update raises InvalidUpdate naming its field before anything is sent."""
    case, payload, path = INVALID_CASES[0]
    conn, target = SYNC[kind](database_url)
    try:
        with pytest.raises(outbox_worker.InvalidUpdate) as error:
            outbox_worker.enqueue(target, payload)
        conn.commit()
    finally:
        conn.close()
    assert path in error.value.paths, case
    assert await _stored(pg) == []


# --- no silent dual write ------------------------------------------------------------------------


@contextmanager
def _psycopg_autocommit(url: str) -> Iterator[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


@contextmanager
def _psycopg_autocommit_cursor(url: str) -> Iterator[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn.cursor()


@contextmanager
def _psycopg2_autocommit(url: str) -> Iterator[Any]:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _psycopg2_autocommit_cursor(url: str) -> Iterator[Any]:
    with _psycopg2_autocommit(url) as conn:
        yield conn.cursor()


@contextmanager
def _sqlalchemy_autocommit_begin(url: str) -> Iterator[Any]:
    # engine.begin() reads like a transaction, but AUTOCOMMIT isolation sends no BEGIN.
    engine = create_engine(sqlalchemy_url(url, "psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _sqlalchemy_autocommit_session(url: str) -> Iterator[Any]:
    engine = create_engine(sqlalchemy_url(url, "psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def _sqlalchemy_autocommit_scoped_session(url: str) -> Iterator[Any]:
    engine = create_engine(sqlalchemy_url(url, "psycopg"), isolation_level="AUTOCOMMIT")
    sessions = scoped_session(sessionmaker(engine))
    try:
        yield sessions
    finally:
        sessions.remove()
        engine.dispose()


@asynccontextmanager
async def _asyncpg_bare(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _asyncpg_pool(url: str) -> AsyncIterator[Any]:
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool, pool.acquire() as conn:
        yield conn


@asynccontextmanager
async def _sqlalchemy_async_autocommit(url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


@asynccontextmanager
async def _sqlalchemy_async_autocommit_session(url: str) -> AsyncIterator[Any]:
    engine = create_async_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with AsyncSession(engine) as session:
            yield session
    finally:
        await engine.dispose()


@asynccontextmanager
async def _psycopg_async_autocommit(url: str) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        yield conn


@asynccontextmanager
async def _psycopg_async_autocommit_cursor(url: str) -> AsyncIterator[Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        yield conn.cursor()


SYNC_AUTOCOMMIT: dict[str, Callable[[str], AbstractContextManager[Any]]] = {
    "SQLAlchemy Connection, AUTOCOMMIT": _sqlalchemy_autocommit_begin,
    "SQLAlchemy Session, AUTOCOMMIT": _sqlalchemy_autocommit_session,
    "SQLAlchemy scoped_session, AUTOCOMMIT": _sqlalchemy_autocommit_scoped_session,
    "psycopg Connection, autocommit": _psycopg_autocommit,
    "psycopg Cursor, autocommit": _psycopg_autocommit_cursor,
    "psycopg2 connection, autocommit": _psycopg2_autocommit,
    "psycopg2 cursor, autocommit": _psycopg2_autocommit_cursor,
}
ASYNC_AUTOCOMMIT: dict[str, Callable[[str], AbstractAsyncContextManager[Any]]] = {
    "asyncpg Connection": _asyncpg_bare,
    "asyncpg pool connection": _asyncpg_pool,
    "SQLAlchemy AsyncConnection, AUTOCOMMIT": _sqlalchemy_async_autocommit,
    "SQLAlchemy AsyncSession, AUTOCOMMIT": _sqlalchemy_async_autocommit_session,
    "psycopg AsyncConnection, autocommit": _psycopg_async_autocommit,
    "psycopg AsyncCursor, autocommit": _psycopg_async_autocommit_cursor,
}


def _says_why_and_how_out(error: outbox_worker.NotInTransaction) -> None:
    message = str(error)
    assert "not inside a transaction" in message
    assert "dual write" in message
    assert "allow_autocommit=True" in message


@pytest.mark.parametrize("kind", SYNC_AUTOCOMMIT)
async def test_sync_enqueue_outside_a_transaction_is_refused(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """On a connection that would commit the update alone, enqueue raises NotInTransaction and
    stores nothing; with allow_autocommit=True it stores (and commits) the update."""
    with SYNC_AUTOCOMMIT[kind](database_url) as conn:
        with pytest.raises(outbox_worker.NotInTransaction) as error:
            outbox_worker.enqueue(conn, EXAMPLE)
        assert await _stored(pg) == []
        backfilled = outbox_worker.enqueue(conn, EXAMPLE, allow_autocommit=True)
        assert await _stored(pg) == [(backfilled, WIRE)]
    _says_why_and_how_out(error.value)


@pytest.mark.parametrize("kind", ASYNC_AUTOCOMMIT)
async def test_async_enqueue_outside_a_transaction_is_refused(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """On a connection that would commit the update alone, enqueue_async raises NotInTransaction
    and stores nothing; with allow_autocommit=True it stores (and commits) the update."""
    async with ASYNC_AUTOCOMMIT[kind](database_url) as conn:
        with pytest.raises(outbox_worker.NotInTransaction) as error:
            await outbox_worker.enqueue_async(conn, EXAMPLE)
        assert await _stored(pg) == []
        backfilled = await outbox_worker.enqueue_async(conn, EXAMPLE, allow_autocommit=True)
        assert await _stored(pg) == [(backfilled, WIRE)]
    _says_why_and_how_out(error.value)


async def test_an_explicit_transaction_on_an_autocommit_connection_is_joined(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """psycopg's conn.transaction() and psycopg2's BEGIN on autocommit connections are joined."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.transaction():
            kept = outbox_worker.enqueue(conn, EXAMPLE)
        with conn.transaction(force_rollback=True):
            outbox_worker.enqueue(conn, EXAMPLE)
    with _psycopg2_autocommit(database_url) as conn2, conn2.cursor() as cursor:
        cursor.execute("BEGIN")
        outbox_worker.enqueue(cursor, EXAMPLE)
        cursor.execute("ROLLBACK")
    assert await _stored(pg) == [(kept, WIRE)]


async def test_sqlalchemy_autobegin_joins_an_enqueue_that_comes_first(
    database_url: str, pg: asyncpg.Connection
) -> None:
    """A SQLAlchemy Connection begins its transaction before its first statement: an enqueue
    there is kept by the caller's commit and dropped when the caller never commits."""
    engine = create_engine(sqlalchemy_url(database_url, "psycopg"))
    try:
        with engine.connect() as conn:
            assert not conn.in_transaction()
            kept = outbox_worker.enqueue(conn, EXAMPLE)
            conn.execute(text("SELECT 1"))
            conn.commit()
            outbox_worker.enqueue(conn, EXAMPLE)  # never committed: closing rolls it back
    finally:
        engine.dispose()
    assert await _stored(pg) == [(kept, WIRE)]


async def test_a_connection_of_the_other_kind_is_a_type_error(database_url: str) -> None:
    """A sync connection given to enqueue_async (and the reverse) is refused with the right call."""
    with (
        psycopg.connect(database_url) as conn,
        pytest.raises(TypeError, match="it is synchronous: call enqueue"),
    ):
        await outbox_worker.enqueue_async(conn, EXAMPLE)  # type: ignore[arg-type]
    async with await psycopg.AsyncConnection.connect(database_url) as aconn:
        with pytest.raises(TypeError, match="it is asynchronous: await enqueue_async"):
            outbox_worker.enqueue(aconn, EXAMPLE)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"enqueue cannot use a builtins\.object"):
        outbox_worker.enqueue(object(), EXAMPLE)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["psycopg Cursor", "psycopg RawCursor", "psycopg2 cursor"])
async def test_a_traced_enqueue_through_psycopg_stores_the_span(
    kind: str, database_url: str, pg: asyncpg.Connection
) -> None:
    """Inside a span, enqueue through psycopg stores the span's traceparent with the row."""
    conn, target = SYNC[kind](database_url)
    try:
        with TracerProvider().get_tracer("signup").start_as_current_span("signup") as span:
            message_id = outbox_worker.enqueue(target, EXAMPLE)
        conn.commit()
    finally:
        conn.close()
    context = span.get_span_context()
    stored = await pg.fetchval(
        "SELECT trace_context->>'traceparent' FROM outbox.messages WHERE id = $1", message_id
    )
    assert stored == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def _canaries(value: Any) -> list[str]:
    """Every string in the canary payload that is personal data (the canary suite's markers)."""
    if isinstance(value, dict):
        return [c for v in value.values() for c in _canaries(v)]
    if isinstance(value, list):
        return [c for v in value for c in _canaries(v)]
    return [value] if isinstance(value, str) and "canary" in value else []


@pytest.mark.parametrize("kind", SYNC_AUTOCOMMIT)
async def test_refusals_on_every_sync_path_quote_no_personal_data(
    kind: str, database_url: str
) -> None:
    """NotInTransaction and InvalidUpdate through each driver name no value of the update."""
    from tests.e2e.test_canaries import DEDUP_KEY, PAYLOAD

    broken = {**PAYLOAD, "customer": {**PAYLOAD["customer"], "telephone": "canary-phone-q7x"}}
    with SYNC_AUTOCOMMIT[kind](database_url) as conn:
        with pytest.raises(outbox_worker.NotInTransaction) as refused:
            outbox_worker.enqueue(conn, PAYLOAD, dedup_key=DEDUP_KEY)
        with pytest.raises(outbox_worker.InvalidUpdate) as invalid:
            outbox_worker.enqueue(conn, broken, dedup_key=DEDUP_KEY)
    said = f"{refused.value!r} {refused.value} {invalid.value!r} {invalid.value}"
    assert [c for c in [*_canaries(broken), DEDUP_KEY] if c in said] == []

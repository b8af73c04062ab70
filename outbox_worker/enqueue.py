"""Enqueue a registration update on the caller's connection, inside the caller's transaction.

Neither function commits: the update is stored if and only if the caller's transaction commits,
which is the whole point of the outbox. The update is validated and serialized once, here; the
stored text is what the worker will send, byte for byte, on every attempt.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    from sqlalchemy import Connection, TextClause
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session

    from outbox_worker.payload import RegistrationUpdate

# SQLAlchemy (its ORM comes with Session) and pydantic are imported on first use, not with the
# package: every module of the worker daemon imports this package, which would cost each worker
# process ~0.3 s at start for two libraries it never uses.
Update: TypeAlias = "RegistrationUpdate | Mapping[str, Any]"

# The update was checked here by the same rules outbox.enqueue() applies in PL/pgSQL (the tests
# hold the two to the same answers), so this path skips the second check, which would more than
# double the cost of an enqueue. outbox.insert_message() stores it (dedup rules, and a NOTIFY at
# commit at most once per 10 ms across all transactions: migration 0006) in one round trip; it
# is SECURITY DEFINER, so a producer role needs no privilege on the table itself.
# The same statement in each driver's parameter style, written out rather than built.
# With the caller's trace context (revision 0009) as a third argument only when there is one: an
# application without tracing sends the same statement as before.
_INSERT_ASYNCPG = "SELECT outbox.insert_message($1::jsonb, $2)"
_INSERT_SQLALCHEMY = "SELECT outbox.insert_message(CAST(:payload AS jsonb), :dedup_key)"
_INSERT_TRACED_ASYNCPG = "SELECT outbox.insert_message($1::jsonb, $2, $3::jsonb)"
_INSERT_TRACED_SQLALCHEMY = (
    "SELECT outbox.insert_message(CAST(:payload AS jsonb), :dedup_key, CAST(:trace AS jsonb))"
)


@cache
def _insert(traced: bool = False) -> TextClause:
    from sqlalchemy import text

    return text(_INSERT_TRACED_SQLALCHEMY if traced else _INSERT_SQLALCHEMY)


def trace_context() -> str | None:
    """The caller's current W3C trace context as stored JSON, or None.

    Until the application imports OpenTelemetry this is one dict lookup: nothing is imported
    here, and an application that does not trace pays nothing measurable.
    """
    if "opentelemetry.trace" not in sys.modules:
        return None
    return _current_trace_context()()


@cache
def _current_trace_context() -> Callable[[], str | None]:
    from outbox_worker.integrations.otel import current_trace_context

    return current_trace_context


def serialize(update: Update) -> str:
    """Validate an update and return the JSON text that will be stored and sent."""
    from outbox_worker.payload import parse_update

    return parse_update(update).to_json()


def enqueue(conn: Connection | Session, update: Update, *, dedup_key: str | None = None) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    params = {"payload": serialize(update), "dedup_key": dedup_key}
    trace = trace_context()
    if trace is not None:
        params["trace"] = trace
    return int(conn.execute(_insert(trace is not None), params).scalar_one())


async def enqueue_async(
    conn: AsyncConnection | AsyncSession | asyncpg.Connection | PoolConnectionProxy,
    update: Update,
    *,
    dedup_key: str | None = None,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    body = serialize(update)
    trace = trace_context()
    if isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
        if trace is not None:
            return int(await conn.fetchval(_INSERT_TRACED_ASYNCPG, body, dedup_key, trace))
        return int(await conn.fetchval(_INSERT_ASYNCPG, body, dedup_key))
    params = {"payload": body, "dedup_key": dedup_key}
    if trace is not None:
        params["trace"] = trace
    return int((await conn.execute(_insert(trace is not None), params)).scalar_one())

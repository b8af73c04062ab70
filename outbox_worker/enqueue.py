"""Enqueue a registration update on the caller's connection, inside the caller's transaction.

Neither function commits: the update is stored if and only if the caller's transaction commits,
which is the whole point of the outbox. The update is validated and serialized once, here; the
stored text is what the worker will send, byte for byte, on every attempt.

Accepted connections (each joins the transaction already open on it):

    enqueue        SQLAlchemy Connection, Session, scoped_session; psycopg 3 Connection, Cursor;
                   psycopg2 connection, cursor
    enqueue_async  asyncpg Connection (and a pool's connection); SQLAlchemy AsyncConnection,
                   AsyncSession; psycopg 3 AsyncConnection, AsyncCursor

Drivers are recognised by their classes' names and packages (``drivers``), so neither psycopg
package is imported here, nor needed unless the caller passes one of its connections. An enqueue
on a connection that would commit it alone raises ``NotInTransaction`` (see ``drivers``) unless
the caller passes ``allow_autocommit=True``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from outbox_worker.drivers import (
    INSERT_ASYNCPG,
    INSERT_TRACED_ASYNCPG,
    Args,
    resolve_async,
    resolve_sync,
)
from outbox_worker.errors import NotInTransaction

if TYPE_CHECKING:
    import psycopg
    import psycopg2.extensions
    from sqlalchemy import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session, scoped_session

    from outbox_worker.payload.model import RegistrationUpdate

    SyncConnection: TypeAlias = (
        Connection
        | Session
        | scoped_session[Any]
        | psycopg.Connection[Any]
        | psycopg.Cursor[Any]
        | psycopg2.extensions.connection
        | psycopg2.extensions.cursor
    )
    AsyncConnectionLike: TypeAlias = (
        asyncpg.Connection
        | PoolConnectionProxy
        | AsyncConnection
        | AsyncSession
        | psycopg.AsyncConnection[Any]
        | psycopg.AsyncCursor[Any]
    )

# pydantic is imported on first use, not with the package: every module of the worker daemon
# imports this package, which would cost each worker process ~0.2 s at start for a library it
# never uses.
Update: TypeAlias = "RegistrationUpdate | Mapping[str, Any]"


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
    from outbox_worker.integrations.otel.context import current_trace_context

    return current_trace_context


def arguments(update: Update, dedup_key: str | None) -> Args:
    """The statement's arguments: the validated update's JSON text, the key, the trace context.

    The caller's trace context (revision 0009) is a third argument only when there is one: an
    application without tracing sends the same statement as before.
    """
    body = serialize(update)
    trace = trace_context()
    return (body, dedup_key) if trace is None else (body, dedup_key, trace)


def serialize(update: Update) -> str:
    """Validate an update and return the JSON text that will be stored and sent."""
    from outbox_worker.payload.model import parse_update

    return parse_update(update).to_json()


def enqueue(
    conn: SyncConnection,
    update: Update,
    *,
    dedup_key: str | None = None,
    allow_autocommit: bool = False,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id.

    ``conn`` is a SQLAlchemy ``Connection``, ``Session`` or ``scoped_session``, a psycopg 3
    ``Connection`` or ``Cursor``, or a psycopg2 connection or cursor. Raises
    ``NotInTransaction`` when ``conn`` would commit the update alone, unless
    ``allow_autocommit`` is true; ``InvalidUpdate`` when the update breaks Ravelin's rules.
    """
    insert = resolve_sync(type(conn))
    return insert(conn, arguments(update, dedup_key), allow_autocommit)


async def enqueue_async(
    conn: AsyncConnectionLike,
    update: Update,
    *,
    dedup_key: str | None = None,
    allow_autocommit: bool = False,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id.

    ``conn`` is an asyncpg ``Connection`` (or a pool's), a SQLAlchemy ``AsyncConnection`` or
    ``AsyncSession``, or a psycopg 3 ``AsyncConnection`` or ``AsyncCursor``. Raises
    ``NotInTransaction`` when ``conn`` would commit the update alone, unless
    ``allow_autocommit`` is true; ``InvalidUpdate`` when the update breaks Ravelin's rules.
    """
    # asyncpg first and inline: the worker's own tests and most async producers use it, and the
    # lookup below costs about as much as this whole branch.
    if isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
        args = arguments(update, dedup_key)
        if not allow_autocommit and not conn.is_in_transaction():
            raise NotInTransaction("asyncpg")
        sql = INSERT_ASYNCPG if len(args) == 2 else INSERT_TRACED_ASYNCPG
        return int(await conn.fetchval(sql, *args))
    insert = resolve_async(type(conn))
    return await insert(conn, arguments(update, dedup_key), allow_autocommit)

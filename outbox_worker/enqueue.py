"""Enqueue a registration update on the caller's connection, inside the caller's transaction.

Neither function commits: the update is stored if and only if the caller's transaction commits,
which is the whole point of the outbox. The update is validated and serialized once, here; the
stored text is what the worker will send, byte for byte, on every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

if TYPE_CHECKING:
    from sqlalchemy import Connection, TextClause
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
    from sqlalchemy.orm import Session

    from outbox_worker.payload.model import RegistrationUpdate

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
_INSERT_ASYNCPG = "SELECT outbox.insert_message($1::jsonb, $2)"
_INSERT_SQLALCHEMY = "SELECT outbox.insert_message(CAST(:payload AS jsonb), :dedup_key)"


@cache
def _insert() -> TextClause:
    from sqlalchemy import text

    return text(_INSERT_SQLALCHEMY)


def serialize(update: Update) -> str:
    """Validate an update and return the JSON text that will be stored and sent."""
    from outbox_worker.payload.model import parse_update

    return parse_update(update).to_json()


def enqueue(conn: Connection | Session, update: Update, *, dedup_key: str | None = None) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    params = {"payload": serialize(update), "dedup_key": dedup_key}
    return int(conn.execute(_insert(), params).scalar_one())


async def enqueue_async(
    conn: AsyncConnection | AsyncSession | asyncpg.Connection | PoolConnectionProxy,
    update: Update,
    *,
    dedup_key: str | None = None,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    body = serialize(update)
    if isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
        return int(await conn.fetchval(_INSERT_ASYNCPG, body, dedup_key))
    params = {"payload": body, "dedup_key": dedup_key}
    return int((await conn.execute(_insert(), params)).scalar_one())

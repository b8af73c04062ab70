"""Enqueue a registration update on the caller's connection, inside the caller's transaction.

Neither function commits: the update is stored if and only if the caller's transaction commits,
which is the whole point of the outbox. The update is validated and serialized once, here; the
stored text is what the worker will send, byte for byte, on every attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from outbox_worker.payload import RegistrationUpdate, parse_update

Update = RegistrationUpdate | Mapping[str, Any]

# outbox.enqueue() checks the shape again: the SQL function is the one gate every language
# passes, and it keeps dedup and NOTIFY in one place.
_ENQUEUE_SQL = "SELECT outbox.enqueue(CAST(:payload AS jsonb), :dedup_key)"
_ENQUEUE = text(_ENQUEUE_SQL)
_ENQUEUE_ASYNCPG = "SELECT outbox.enqueue($1::jsonb, $2)"


def serialize(update: Update) -> str:
    """Validate an update and return the JSON text that will be stored and sent."""
    return parse_update(update).to_json()


def enqueue(conn: Connection | Session, update: Update, *, dedup_key: str | None = None) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    body = serialize(update)
    result = conn.execute(_ENQUEUE, {"payload": body, "dedup_key": dedup_key})
    return int(result.scalar_one())


async def enqueue_async(
    conn: AsyncConnection | AsyncSession | asyncpg.Connection | PoolConnectionProxy,
    update: Update,
    *,
    dedup_key: str | None = None,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    body = serialize(update)
    if isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
        return int(await conn.fetchval(_ENQUEUE_ASYNCPG, body, dedup_key))
    result = await conn.execute(_ENQUEUE, {"payload": body, "dedup_key": dedup_key})
    return int(result.scalar_one())

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

# The update was checked here by the same rules outbox.enqueue() applies in PL/pgSQL (the tests
# hold the two to the same answers), so this path skips the second check, which would more than
# double the cost of an enqueue. The common case is one plain statement: insert, and NOTIFY the
# workers (at commit) for the row inserted. When the dedup_key is already taken it returns no
# row, and outbox.insert_message() (which owns the dedup rules) finds the first message's id.
_INSERT_SQL = """
WITH inserted AS (
    INSERT INTO outbox.messages (payload, dedup_key) VALUES ({payload}::jsonb, {key})
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('outbox', '') FROM inserted
"""
_EXISTING_SQL = "SELECT outbox.insert_message({payload}::jsonb, {key})"
_INSERT = text(_INSERT_SQL.format(payload="CAST(:payload AS jsonb)", key=":dedup_key"))
_EXISTING = text(_EXISTING_SQL.format(payload="CAST(:payload AS jsonb)", key=":dedup_key"))
_INSERT_ASYNCPG = _INSERT_SQL.format(payload="$1", key="$2")
_EXISTING_ASYNCPG = _EXISTING_SQL.format(payload="$1", key="$2")


def serialize(update: Update) -> str:
    """Validate an update and return the JSON text that will be stored and sent."""
    return parse_update(update).to_json()


def enqueue(conn: Connection | Session, update: Update, *, dedup_key: str | None = None) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    params = {"payload": serialize(update), "dedup_key": dedup_key}
    message_id = conn.execute(_INSERT, params).scalar()
    if message_id is None:
        message_id = conn.execute(_EXISTING, params).scalar_one()
    return int(message_id)


async def enqueue_async(
    conn: AsyncConnection | AsyncSession | asyncpg.Connection | PoolConnectionProxy,
    update: Update,
    *,
    dedup_key: str | None = None,
) -> int:
    """Store an update in the outbox within the caller's transaction; return the message id."""
    body = serialize(update)
    if isinstance(conn, asyncpg.Connection | PoolConnectionProxy):
        message_id = await conn.fetchval(_INSERT_ASYNCPG, body, dedup_key)
        if message_id is None:
            message_id = await conn.fetchval(_EXISTING_ASYNCPG, body, dedup_key)
        return int(message_id)
    params = {"payload": body, "dedup_key": dedup_key}
    message_id = (await conn.execute(_INSERT, params)).scalar()
    if message_id is None:
        message_id = (await conn.execute(_EXISTING, params)).scalar_one()
    return int(message_id)

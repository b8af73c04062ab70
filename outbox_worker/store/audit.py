"""The audit trail: who did what to the outbox, one append-only row per transaction of an action.

Every operator action (requeue, purge, pause, resume; the console's sign-in and reveal of
personal data) writes its row in the same transaction as the change itself, so a change never
commits without its row and a row never claims a change that rolled back. An action that runs in
many transactions (a requeue of a million rows, batch by batch) writes one row per transaction,
all with the same ``operation`` id; ``audit_log`` shows them as one entry.

Who: the database's ``session_user`` (stamped by the table's trigger, never taken from the
client), and the ``Actor`` the caller names: the OS user for the CLI, the signed-in user for the
console. The operator role may add and read rows, never change or delete them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from outbox_worker.store import fleet_queries as sql

DEFAULT_AUDIT_LIMIT = 1_000


class AuditAction(StrEnum):
    """What an audit row records (``outbox.audit_log.action``)."""

    REQUEUE = "requeue"
    PURGE = "purge"
    PAUSE = "pause"
    RESUME = "resume"
    SIGN_IN = "console.sign_in"
    SIGN_OUT = "console.sign_out"
    REVEAL = "console.reveal"  # personal data of one message shown unmasked


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for an action, beside the database login: ``via`` cli or console, and a name."""

    via: str  # "cli" or "console"
    name: str | None  # the OS user (CLI) or the signed-in user (console); None if unknown

    @classmethod
    def cli(cls, os_user: str | None) -> Actor:
        """The CLI run by ``os_user``."""
        return cls("cli", os_user)

    @classmethod
    def console(cls, user: str) -> Actor:
        """The console, for its signed-in ``user``."""
        return cls("console", user)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operation in the audit log: its rows (one per transaction) taken together."""

    operation: uuid.UUID
    at: datetime  # its first row (the database's clock)
    last_at: datetime  # its last row: a batched action's end
    action: str  # an AuditAction value (kept as text: a newer version may write others)
    db_role: str  # the database login (session_user)
    via: str
    actor: str | None
    details: dict[str, Any]  # the filters or ids; "ids" of every transaction joined
    row_count: int  # rows changed, all transactions together
    transactions: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row as written: its id, the database's time and the login it was stamped with."""

    id: int
    at: datetime
    db_role: str


async def record(
    conn: asyncpg.Connection,
    action: AuditAction,
    actor: Actor,
    *,
    details: Mapping[str, Any] | None = None,
    row_count: int = 0,
    operation: uuid.UUID | None = None,
) -> AuditRecord:
    """Write one audit row in ``conn``'s current transaction (or its own, outside one).

    Call it inside the transaction of the change it records (``async with conn.transaction()``),
    so both commit or neither does. ``details`` must be JSON: filters, ids, never a payload.
    """
    row = await conn.fetchrow(
        sql.INSERT_AUDIT,
        operation or uuid.uuid4(),
        str(action),
        actor.via,
        actor.name,
        json.dumps(dict(details or {}), default=str),
        row_count,
    )
    assert row is not None
    return AuditRecord(id=row["id"], at=row["at"], db_role=row["db_role"])


async def audit_log(
    conn: asyncpg.Connection,
    *,
    since: timedelta | None = None,
    limit: int | None = DEFAULT_AUDIT_LIMIT,
) -> list[AuditEntry]:
    """Operations recorded within ``since`` of now (None: all), newest first, at most ``limit``."""
    rows = await conn.fetch(sql.AUDIT_LOG, since, limit)
    return [AuditEntry(**(dict(r) | {"details": _joined(json.loads(r["details"]))})) for r in rows]


def _joined(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One operation's details: the first row's, with every row's "ids" joined in order."""
    joined = dict(parts[0]) if parts else {}
    if any("ids" in part for part in parts):
        joined["ids"] = [i for part in parts for i in part.get("ids", [])]
    return joined


@dataclass(slots=True)
class Trail:
    """The audit rows of one batched action: one per transaction, under one operation id.

    ``note`` goes inside each batch's transaction; ``close`` writes a row with no change for an
    action that changed nothing, so every action asked for leaves a trace.
    """

    action: AuditAction
    actor: Actor
    details: dict[str, Any] = field(default_factory=dict)
    operation: uuid.UUID = field(default_factory=uuid.uuid4)
    written: int = 0

    async def note(self, conn: asyncpg.Connection, row_count: int, **details: Any) -> None:
        """Record one transaction's change (call inside it); nothing when it changed nothing."""
        if row_count == 0:
            return
        await record(
            conn,
            self.action,
            self.actor,
            details=self.details | details,
            row_count=row_count,
            operation=self.operation,
        )
        self.written += 1

    async def close(self, conn: asyncpg.Connection, **details: Any) -> None:
        """Record the action with 0 rows (and ``details``) if no transaction of it changed
        anything."""
        if self.written == 0:
            await record(
                conn,
                self.action,
                self.actor,
                details=self.details | details,
                operation=self.operation,
            )
            self.written += 1

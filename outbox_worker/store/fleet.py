"""The fleet as operators see and steer it: the workers registry and the fleet-wide pause.

Plain functions on an asyncpg connection (the CLI's, or one of the console's pool), returning
frozen values. Pausing and resuming write their audit row in the same transaction as the change
and NOTIFY the workers at its commit; a worker that does not LISTEN reads the pause at its next
poll, and one that starts later reads it before its first claim.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from outbox_worker.errors import InvalidRequest
from outbox_worker.models import (
    REGISTRY_FORGET_AFTER,
    REGISTRY_GONE_AFTER,
    REGISTRY_HEARTBEAT,
    PausedBy,
    PauseState,
    WorkerState,
)
from outbox_worker.pii import mask_text
from outbox_worker.schema import FLEET_PAUSE
from outbox_worker.store import fleet_queries as sql
from outbox_worker.store import listen
from outbox_worker.store.audit import Actor, AuditAction, record

# The registry's clock (models.py says why these values).
HEARTBEAT: Final = REGISTRY_HEARTBEAT
GONE_AFTER: Final = REGISTRY_GONE_AFTER
FORGET_AFTER: Final = REGISTRY_FORGET_AFTER
# The NOTIFY channel of pause changes (the payload says which); enqueue's channel is "outbox".
FLEET_CHANNEL: Final = listen.FLEET_CHANNEL
MAX_REASON_CHARS: Final = 500

__all__ = [
    "FLEET_CHANNEL",
    "FORGET_AFTER",
    "GONE_AFTER",
    "HEARTBEAT",
    "FleetSummary",
    "PauseState",
    "WorkerInfo",
    "fleet_summary",
    "list_workers",
    "pause",
    "pause_state",
    "resume",
]


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One row of `outbox-worker workers`."""

    id: uuid.UUID
    host: str
    pid: int
    version: str
    started_at: datetime
    seen_at: datetime  # its last heartbeat (the database's clock)
    state: WorkerState  # GONE when not seen for GONE_AFTER
    paused_by: PausedBy | None
    listening: bool  # it gets NOTIFY: a pause reaches it within a second, not a poll interval
    sends_last_minute: int  # as of its last heartbeat
    in_flight: int
    seen_ago_s: float


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """What `stats` adds about the fleet: workers by state (every state, 0 included), the pause."""

    workers: dict[WorkerState, int]
    pause: PauseState


async def list_workers(conn: asyncpg.Connection) -> list[WorkerInfo]:
    """Every registered worker, oldest first, gone ones included (until they are forgotten)."""
    rows = await conn.fetch(sql.LIST_WORKERS, GONE_AFTER)
    return [
        WorkerInfo(
            **(
                dict(r)
                | {
                    "state": WorkerState(r["state"]),
                    "paused_by": PausedBy(r["paused_by"]) if r["paused_by"] else None,
                }
            )
        )
        for r in rows
    ]


async def pause_state(conn: asyncpg.Connection) -> PauseState:
    """The fleet's pause as it stands."""
    row = await conn.fetchrow(sql.PAUSE_STATE, FLEET_PAUSE)
    return PauseState(paused=False) if row is None else PauseState(**dict(row))


async def fleet_summary(conn: asyncpg.Connection) -> FleetSummary:
    """Workers by state and the pause, for `stats` and the console's overview."""
    counts = {
        WorkerState(r["state"]): r["n"] for r in await conn.fetch(sql.WORKER_COUNTS, GONE_AFTER)
    }
    workers = {state: counts.get(state, 0) for state in WorkerState}
    return FleetSummary(workers=workers, pause=await pause_state(conn))


def _checked_reason(reason: str) -> str:
    text = " ".join(reason.split())
    if not text:
        raise InvalidRequest("a pause needs a reason (--reason TEXT): say why, for the next person")
    if len(text) > MAX_REASON_CHARS:
        raise InvalidRequest(f"the pause reason is longer than {MAX_REASON_CHARS} characters")
    if not text.isprintable():
        raise InvalidRequest("the pause reason has control characters")
    # Shown on every screen and kept in the audit log for a year: personal data typed into it
    # (an email, a phone number) is masked as the CLI masks any free text.
    return mask_text(text)


async def pause(conn: asyncpg.Connection, reason: str, actor: Actor) -> PauseState:
    """Pause delivery fleet-wide with ``reason``; audited, workers told at commit.

    Pausing while paused replaces the reason but keeps the pause's start. The reason is kept with
    its whitespace collapsed and personal data masked; InvalidRequest (and nothing changed) for
    an empty, overlong or unprintable one.
    """
    text = _checked_reason(reason)
    async with conn.transaction():
        was_paused = bool(await conn.fetchval(sql.LOCK_PAUSE, FLEET_PAUSE))
        row = await conn.fetchrow(sql.PAUSE, FLEET_PAUSE, text, actor.via, actor.name)
        assert row is not None
        details = {"reason": text, "was_paused": was_paused}
        await record(conn, AuditAction.PAUSE, actor, details=details, row_count=1)
        await conn.execute(sql.NOTIFY_FLEET, FLEET_CHANNEL, "paused")
    return PauseState(**dict(row))


async def resume(conn: asyncpg.Connection, actor: Actor) -> PauseState:
    """Resume delivery fleet-wide; audited (0 rows if it was not paused), workers told at commit."""
    async with conn.transaction():
        was_paused = bool(await conn.fetchval(sql.LOCK_PAUSE, FLEET_PAUSE))
        row = await conn.fetchrow(sql.RESUME, FLEET_PAUSE, actor.via, actor.name)
        assert row is not None
        details = {"was_paused": was_paused}
        await record(conn, AuditAction.RESUME, actor, details=details, row_count=int(was_paused))
        await conn.execute(sql.NOTIFY_FLEET, FLEET_CHANNEL, "resumed")
    return PauseState(**dict(row))

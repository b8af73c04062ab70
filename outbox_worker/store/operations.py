"""The operator's SQL: dead letters, requeue, purge and stats, one named function each.

Requeue and purge work in batches, each its own short transaction, walking the table by id
(keyset), so a million rows neither hold locks for long nor pass through this process's memory:
only one batch of ids is in hand at a time. Every change is guarded by the state it expects
(``AND state = 'dead'``), so a row that moved meanwhile is left alone and simply not counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from outbox_worker.errors import MessageNotFound
from outbox_worker.models import State, Stats

DEFAULT_BATCH_SIZE = 5_000
TOP_REASONS = 5

Progress = Callable[[int], None]
"""Called after each batch with the number of rows that batch changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadFilters:
    """Which dead letters `dead list` shows and `requeue` moves; None means no filter."""

    since: timedelta | None = None  # dead at most this long ago
    status_code: int | None = None  # last HTTP status
    error_contains: str | None = None  # substring of last_error, case-insensitive
    limit: int | None = None  # the newest this many only


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of `dead list`."""

    id: int
    created_at: datetime
    dead_at: datetime
    attempts: int
    last_status: int | None
    last_error: str | None
    requeue_count: int
    dedup_key: str | None
    payload: Any


@dataclass(frozen=True, slots=True)
class MessageDetail:
    """Everything stored about one message, for `dead show`."""

    id: int
    state: State
    attempts: int
    dedup_key: str | None
    created_at: datetime
    available_at: datetime
    claimed: bool
    acknowledged_at: datetime | None
    dead_at: datetime | None
    last_status: int | None
    last_error: str | None
    last_response: Any
    history: list[dict[str, Any]]
    requeue_count: int
    requeued_at: datetime | None
    payload: Any


@dataclass(frozen=True, slots=True)
class RequeueResult:
    """What a requeue by id did: how many moved, and the named ids that were not dead."""

    requeued: int
    not_dead: dict[int, State] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    """Rows a purge deleted (or, on a dry run, would delete), by state."""

    acknowledged: int
    dead: int


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class _Where:
    """A parameterized WHERE clause for dead letters; placeholders are numbered from 1."""

    sql: str
    args: list[Any]

    def placeholder(self) -> str:
        return f"${len(self.args) + 1}"


async def _dead_where(conn: asyncpg.Connection, filters: DeadFilters) -> _Where:
    """The clause selecting exactly the rows `dead list` with these filters shows right now."""
    if filters.limit is not None and filters.limit <= 0:
        return _Where("false", [])
    clauses, args = ["state = 'dead'"], []
    if filters.since is not None:
        # Fixed once, so every batch of a long requeue sees the same window.
        args.append(await conn.fetchval("SELECT now() - $1::interval", filters.since))
        clauses.append(f"dead_at >= ${len(args)}")
    if filters.status_code is not None:
        args.append(filters.status_code)
        clauses.append(f"last_status = ${len(args)}")
    if filters.error_contains:
        args.append(f"%{_escape_like(filters.error_contains)}%")
        clauses.append(f"last_error ILIKE ${len(args)}")
    sql = " AND ".join(clauses)
    if filters.limit is not None:
        # The newest N, as `dead list` shows them: bounded by the Nth row's (dead_at, id), so
        # batches can still walk by id without holding N ids in memory.
        bound = await conn.fetchrow(
            f"SELECT dead_at, id FROM outbox.messages WHERE {sql} "  # noqa: S608 (no user text)
            f"ORDER BY dead_at DESC, id DESC OFFSET ${len(args) + 1} LIMIT 1",
            *args,
            filters.limit - 1,
        )
        if bound is not None:
            args.extend([bound["dead_at"], bound["id"]])
            sql += f" AND (dead_at, id) >= (${len(args) - 1}, ${len(args)})"
    return _Where(sql, args)


_DEAD_COLUMNS = (
    "id, created_at, dead_at, attempts, last_status, last_error, requeue_count, dedup_key, "
    "payload::text AS payload"
)


async def list_dead(
    conn: asyncpg.Connection, filters: DeadFilters, limit: int | None = None
) -> list[DeadLetter]:
    """Dead letters matching ``filters``, newest first, at most ``limit`` (else filters.limit)."""
    where = await _dead_where(conn, filters)
    cap = limit if limit is not None else filters.limit
    query = (
        f"SELECT {_DEAD_COLUMNS} FROM outbox.messages WHERE {where.sql} "  # noqa: S608
        f"ORDER BY dead_at DESC, id DESC LIMIT {where.placeholder()}"
    )
    rows = await conn.fetch(
        query,
        *where.args,
        cap,
    )
    return [
        DeadLetter(
            id=r["id"],
            created_at=r["created_at"],
            dead_at=r["dead_at"],
            attempts=r["attempts"],
            last_status=r["last_status"],
            last_error=r["last_error"],
            requeue_count=r["requeue_count"],
            dedup_key=r["dedup_key"],
            payload=json.loads(r["payload"]),
        )
        for r in rows
    ]


async def count_dead(conn: asyncpg.Connection, filters: DeadFilters) -> int:
    """How many dead letters match ``filters`` (what a requeue with them would move)."""
    where = await _dead_where(conn, filters)
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM outbox.messages WHERE {where.sql}",  # noqa: S608
        *where.args,
    )
    return count


async def get_message(conn: asyncpg.Connection, message_id: int) -> MessageDetail:
    """One message with its whole history; MessageNotFound if no row has that id."""
    r = await conn.fetchrow(
        "SELECT id, state, attempts, dedup_key, created_at, available_at, "
        "lease_token IS NOT NULL AS claimed, acknowledged_at, dead_at, last_status, last_error, "
        "last_response::text AS last_response, history::text AS history, requeue_count, "
        "requeued_at, payload::text AS payload FROM outbox.messages WHERE id = $1",
        message_id,
    )
    if r is None:
        raise MessageNotFound(message_id)
    return MessageDetail(
        id=r["id"],
        state=State(r["state"]),
        attempts=r["attempts"],
        dedup_key=r["dedup_key"],
        created_at=r["created_at"],
        available_at=r["available_at"],
        claimed=r["claimed"],
        acknowledged_at=r["acknowledged_at"],
        dead_at=r["dead_at"],
        last_status=r["last_status"],
        last_error=r["last_error"],
        last_response=json.loads(r["last_response"]) if r["last_response"] else None,
        history=json.loads(r["history"]),
        requeue_count=r["requeue_count"],
        requeued_at=r["requeued_at"],
        payload=json.loads(r["payload"]),
    )


async def message_states(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, State]:
    """The state of each named message; MessageNotFound for the first id that does not exist."""
    rows = await conn.fetch(
        "SELECT id, state FROM outbox.messages WHERE id = ANY($1::bigint[])", list(ids)
    )
    states = {r["id"]: State(r["state"]) for r in rows}
    for message_id in ids:
        if message_id not in states:
            raise MessageNotFound(message_id)
    return states


# Back to pending, claimable now, attempts reset; history kept and the requeue counted. The
# NOTIFY wakes running workers at commit, so requeued messages go out promptly.
_REQUEUE = """
WITH moved AS (
    UPDATE outbox.messages
    SET state = 'pending', attempts = 0, available_at = now(), dead_at = NULL,
        lease_token = NULL, claimed_at = NULL,
        requeue_count = requeue_count + 1, requeued_at = now()
    WHERE id = ANY($1::bigint[]) AND state = 'dead'
    RETURNING id
)
SELECT count(*) AS moved, pg_notify('outbox', '') FROM moved
"""


async def _requeue_batch(conn: asyncpg.Connection, ids: list[int]) -> int:
    async with conn.transaction():
        moved: int = await conn.fetchval(_REQUEUE, ids)
    return moved


async def requeue_ids(
    conn: asyncpg.Connection,
    ids: Sequence[int],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> RequeueResult:
    """Move the named dead messages to pending; report the named ones that are not dead."""
    states = await message_states(conn, ids)
    not_dead: dict[int, State] = {i: s for i, s in states.items() if s is not State.DEAD}
    dead = sorted({i for i in ids if i not in not_dead})
    requeued = 0
    for start in range(0, len(dead), batch_size):
        moved = await _requeue_batch(conn, dead[start : start + batch_size])
        requeued += moved
        if on_progress is not None:
            on_progress(moved)
    return RequeueResult(requeued=requeued, not_dead=not_dead)


async def requeue_dead(
    conn: asyncpg.Connection,
    filters: DeadFilters,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> int:
    """Move every dead letter matching ``filters`` to pending, batch by batch; return the count."""
    where = await _dead_where(conn, filters)
    # Rows that die after the start (new ids) are not part of this requeue.
    ceiling = await conn.fetchval("SELECT max(id) FROM outbox.messages")
    if ceiling is None:
        return 0
    after_ph, ceiling_ph, size_ph = (f"${len(where.args) + n}" for n in (1, 2, 3))
    next_ids = (
        f"SELECT id FROM outbox.messages WHERE {where.sql} "  # noqa: S608 (no user text)
        f"AND id > {after_ph} AND id <= {ceiling_ph} ORDER BY id LIMIT {size_ph}"
    )
    after, requeued = 0, 0
    while True:
        ids = [r["id"] for r in await conn.fetch(next_ids, *where.args, after, ceiling, batch_size)]
        if not ids:
            return requeued
        moved = await _requeue_batch(conn, ids)
        requeued += moved
        after = ids[-1]
        if on_progress is not None:
            on_progress(moved)
        if len(ids) < batch_size:
            return requeued


_PURGEABLE = {
    State.ACKNOWLEDGED: "state = 'acknowledged' AND acknowledged_at < $1",
    State.DEAD: "state = 'dead' AND dead_at < $1",
}


async def count_purgeable(
    conn: asyncpg.Connection, older_than: timedelta, *, include_dead: bool = False
) -> PurgeCounts:
    """How many rows a purge with these arguments would delete, by state."""
    cutoff = await conn.fetchval("SELECT now() - $1::interval", older_than)
    counts: dict[State, int] = {}
    for state, clause in _PURGEABLE.items():
        if state is State.DEAD and not include_dead:
            counts[state] = 0
            continue
        counts[state] = await conn.fetchval(
            f"SELECT count(*) FROM outbox.messages WHERE {clause}",  # noqa: S608
            cutoff,
        )
    return PurgeCounts(acknowledged=counts[State.ACKNOWLEDGED], dead=counts[State.DEAD])


async def purge(
    conn: asyncpg.Connection,
    older_than: timedelta,
    *,
    include_dead: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> PurgeCounts:
    """Delete acknowledged (and, if asked, dead) rows older than ``older_than``, in batches."""
    if dry_run:
        return await count_purgeable(conn, older_than, include_dead=include_dead)
    cutoff = await conn.fetchval("SELECT now() - $1::interval", older_than)
    deleted: dict[State, int] = {State.ACKNOWLEDGED: 0, State.DEAD: 0}
    for state, clause in _PURGEABLE.items():
        if state is State.DEAD and not include_dead:
            continue
        # The outer WHERE repeats the condition: a row that changed since the SELECT is kept.
        batch_sql = (
            f"WITH gone AS (DELETE FROM outbox.messages WHERE id IN ("  # noqa: S608
            f"SELECT id FROM outbox.messages WHERE {clause} LIMIT $2 FOR UPDATE SKIP LOCKED) "
            f"AND {clause} RETURNING 1) SELECT count(*) FROM gone"
        )
        while True:
            async with conn.transaction():
                count: int = await conn.fetchval(batch_sql, cutoff, batch_size)
            deleted[state] += count
            if on_progress is not None:
                on_progress(count)
            if count < batch_size:
                break
    return PurgeCounts(acknowledged=deleted[State.ACKNOWLEDGED], dead=deleted[State.DEAD])


# Each count is its own subquery so it can use the matching partial index.
_STATS = """
SELECT
  (SELECT count(*) FROM outbox.messages WHERE state = 'pending') AS pending,
  (SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND lease_token IS NOT NULL)
    AS claimed,
  (SELECT count(*) FROM outbox.messages WHERE state = 'acknowledged') AS acknowledged,
  (SELECT count(*) FROM outbox.messages WHERE state = 'dead') AS dead,
  (SELECT extract(epoch FROM now() - min(created_at))::float8
     FROM outbox.messages WHERE state = 'pending') AS oldest_pending_age_s,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'dead' AND dead_at >= now() - interval '1 hour') AS dead_last_hour,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'dead' AND dead_at >= now() - interval '1 day') AS dead_last_day,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'acknowledged' AND acknowledged_at >= now() - interval '1 minute')
    AS delivered_last_minute,
  (SELECT count(*) FROM outbox.messages
     WHERE state = 'acknowledged' AND acknowledged_at >= now() - interval '1 hour')
    AS delivered_last_hour
"""

# One line per dead-letter reason. The traceId differs on every answer, so it is cut out here
# (it stays in last_error for `dead show`) and the same reason groups together.
DEAD_REASON = r"""regexp_replace(
    coalesce(last_error, 'HTTP ' || last_status, 'no reason recorded'),
    ' \(traceId [^)]*\)', '', 'g'
)"""
_TOP_REASONS = f"""
SELECT {DEAD_REASON} AS reason, count(*) AS n
FROM outbox.messages WHERE state = 'dead'
GROUP BY 1 ORDER BY n DESC, reason LIMIT $1
"""  # noqa: S608 (constant text)


async def stats(conn: asyncpg.Connection, *, top: int = TOP_REASONS) -> Stats:
    """Counts by state, backlog age, recent dead letters and deliveries, top dead reasons."""
    r = await conn.fetchrow(_STATS)
    assert r is not None
    reasons = await conn.fetch(_TOP_REASONS, top)
    return Stats(
        pending=r["pending"],
        claimed=r["claimed"],
        acknowledged=r["acknowledged"],
        dead=r["dead"],
        oldest_pending_age_s=r["oldest_pending_age_s"],
        dead_last_hour=r["dead_last_hour"],
        dead_last_day=r["dead_last_day"],
        delivered_last_minute=r["delivered_last_minute"],
        delivered_last_hour=r["delivered_last_hour"],
        top_dead_reasons=[(x["reason"], x["n"]) for x in reasons],
    )

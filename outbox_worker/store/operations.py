"""The operator's operations: dead letters, requeue, purge and stats, one named function each.

The statements themselves are in operator_queries.py, each one static text; this module binds
their parameters and turns rows into values.

Requeue and purge work in batches, each its own short transaction, walking the table by id
(keyset), so a million rows neither hold locks for long nor pass through this process's memory:
only one batch of ids is in hand at a time. Every change is guarded by the state it expects
(``AND state = 'dead'``), so a row that moved meanwhile is left alone and simply not counted.
Each batch's transaction also writes the action's audit row (store/audit.py), so the audit log
says exactly which batches committed, by whom and with which filter.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from outbox_worker.errors import MessageNotFound
from outbox_worker.models import State, Stats
from outbox_worker.pii import mask_text
from outbox_worker.quoted import QuotedValues
from outbox_worker.store import operator_queries as sql
from outbox_worker.store.audit import Actor, AuditAction, Trail

DEFAULT_BATCH_SIZE = 5_000
TOP_REASONS = 5
# Reason groups read for each one shown: rows an older worker wrote quote a customer's values, so
# their reasons split per customer until masking merges them back.
_REASON_GROUPS_READ = 4

Progress = Callable[[int], None]
"""Called after each batch with the number of rows that batch changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadFilters:
    """Which dead letters `dead list` shows and `requeue` moves; None means no filter."""

    since: timedelta | None = None  # dead at most this long ago
    status_code: int | None = None  # last HTTP status
    error_contains: str | None = None  # substring of last_error, case-insensitive
    dedup_key: str | None = None  # this dedup key exactly
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

    @property
    def total(self) -> int:
        """Rows of either state."""
        return self.acknowledged + self.dead


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@asynccontextmanager
async def _planned_for_values(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction whose statements are planned for their parameter values each time."""
    async with conn.transaction():
        await conn.execute(sql.PLAN_FOR_VALUES)
        yield


async def _dead_args(conn: asyncpg.Connection, filters: DeadFilters) -> list[Any] | None:
    """$1-$6 of the dead-letter queries for these filters; None when the filters match nothing.

    The window and the limit's bound are resolved once, here, so every batch of a long requeue
    selects from the same rows that `dead list` with these filters shows right now.
    """
    if filters.limit is not None and filters.limit <= 0:
        return None
    cutoff = None
    if filters.since is not None:
        cutoff = await conn.fetchval(sql.CUTOFF, filters.since)
    pattern = f"%{_escape_like(filters.error_contains)}%" if filters.error_contains else None
    args: list[Any] = [cutoff, filters.status_code, pattern, filters.dedup_key, None, None]
    if filters.limit is not None:
        # The newest N, as `dead list` shows them: bounded by the Nth row's (dead_at, id), so
        # batches can still walk by id without holding N ids in memory.
        bound = await conn.fetchrow(sql.NTH_NEWEST_DEAD, *args[:4], filters.limit - 1)
        if bound is not None:
            args[4:] = [bound["dead_at"], bound["id"]]
    return args


async def list_dead(
    conn: asyncpg.Connection, filters: DeadFilters, limit: int | None = None
) -> list[DeadLetter]:
    """Dead letters matching ``filters``, newest first, at most ``limit`` (else filters.limit)."""
    async with _planned_for_values(conn):
        args = await _dead_args(conn, filters)
        if args is None:
            return []
        cap = limit if limit is not None else filters.limit
        rows = await conn.fetch(sql.LIST_DEAD, *args, cap)
    # The statement's columns are named after the fields; JSON arrives as text.
    return [DeadLetter(**dict(r) | {"payload": json.loads(r["payload"])}) for r in rows]


@dataclass(frozen=True, slots=True)
class DeadCursor:
    """Where a page of dead letters ended: the last row's (dead_at, id)."""

    dead_at: datetime
    id: int


async def page_dead(
    conn: asyncpg.Connection, filters: DeadFilters, after: DeadCursor | None, size: int
) -> list[DeadLetter]:
    """One page of dead letters matching ``filters``, newest first, older than ``after``."""
    async with _planned_for_values(conn):
        args = await _dead_args(conn, filters)
        if args is None:
            return []
        cursor = [None, None] if after is None else [after.dead_at, after.id]
        rows = await conn.fetch(sql.PAGE_DEAD, *args, *cursor, size)
    return [DeadLetter(**dict(r) | {"payload": json.loads(r["payload"])}) for r in rows]


async def count_dead(conn: asyncpg.Connection, filters: DeadFilters) -> int:
    """How many dead letters match ``filters`` (what a requeue with them would move)."""
    async with _planned_for_values(conn):
        args = await _dead_args(conn, filters)
        if args is None:
            return 0
        count: int = await conn.fetchval(sql.COUNT_DEAD, *args)
    return count


async def get_message(conn: asyncpg.Connection, message_id: int) -> MessageDetail:
    """One message with its whole history; MessageNotFound if no row has that id."""
    r = await conn.fetchrow(sql.GET_MESSAGE, message_id)
    if r is None:
        raise MessageNotFound(message_id)
    parsed = {
        "state": State(r["state"]),
        "last_response": json.loads(r["last_response"]) if r["last_response"] else None,
        "history": json.loads(r["history"]),
        "payload": json.loads(r["payload"]),
    }
    return MessageDetail(**(dict(r) | parsed))  # columns named after the fields


async def message_states(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, State]:
    """The state of each named message; MessageNotFound for the first id that does not exist."""
    rows = await conn.fetch(sql.MESSAGE_STATES, list(ids))
    states = {r["id"]: State(r["state"]) for r in rows}
    for message_id in ids:
        if message_id not in states:
            raise MessageNotFound(message_id)
    return states


async def _requeue_batch(
    conn: asyncpg.Connection, ids: list[int], trail: Trail, *, by_ids: bool
) -> int:
    async with conn.transaction():
        moved: int = await conn.fetchval(sql.REQUEUE, ids)
        if by_ids:  # the batch's own ids are what it was asked to move
            await trail.note(conn, moved, ids=ids)
        else:  # the filters, recorded once in the trail, say what it was asked to move
            await trail.note(conn, moved)
    return moved


def _filters_record(filters: DeadFilters) -> dict[str, Any]:
    """The filters as the audit log keeps them (the window in seconds)."""
    since = None if filters.since is None else filters.since.total_seconds()
    return {
        "since_s": since,
        "status_code": filters.status_code,
        # Masked as the text it searches is (last_error holds masked text): an operator who
        # typed a customer's address into the filter does not leave it in the log for years.
        "error_contains": None
        if filters.error_contains is None
        else mask_text(filters.error_contains),
        # Masked as every screen masks it: a dedup key often holds an email.
        "dedup_key": None if filters.dedup_key is None else mask_text(filters.dedup_key),
        "limit": filters.limit,
    }


async def requeue_ids(
    conn: asyncpg.Connection,
    ids: Sequence[int],
    *,
    actor: Actor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> RequeueResult:
    """Move the named dead messages to pending; report the named ones that are not dead.

    Audited for ``actor``: each batch's ids and count, in the batch's transaction.
    """
    states = await message_states(conn, ids)
    not_dead: dict[int, State] = {i: s for i, s in states.items() if s is not State.DEAD}
    dead = sorted({i for i in ids if i not in not_dead})
    trail = Trail(AuditAction.REQUEUE, actor)
    requeued = 0
    for start in range(0, len(dead), batch_size):
        moved = await _requeue_batch(conn, dead[start : start + batch_size], trail, by_ids=True)
        requeued += moved
        if on_progress is not None:
            on_progress(moved)
    await trail.close(conn, ids=dead)
    return RequeueResult(requeued=requeued, not_dead=not_dead)


async def requeue_dead(
    conn: asyncpg.Connection,
    filters: DeadFilters,
    *,
    actor: Actor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: Progress | None = None,
) -> int:
    """Move every dead letter matching ``filters`` to pending, batch by batch; return the count.

    Audited for ``actor``: the filters, and each batch's count in the batch's transaction.
    """
    trail = Trail(AuditAction.REQUEUE, actor, {"filters": _filters_record(filters)})
    requeued = await _requeue_matching(conn, filters, trail, batch_size, on_progress)
    await trail.close(conn)
    return requeued


async def _requeue_matching(
    conn: asyncpg.Connection,
    filters: DeadFilters,
    trail: Trail,
    batch_size: int,
    on_progress: Progress | None,
) -> int:
    async with _planned_for_values(conn):
        args = await _dead_args(conn, filters)
    ceiling = await conn.fetchval(sql.MAX_ID)
    if args is None or ceiling is None:
        return 0
    after, requeued = 0, 0
    while True:
        async with _planned_for_values(conn):
            rows = await conn.fetch(sql.NEXT_DEAD_IDS, *args, after, ceiling, batch_size)
        ids = [r["id"] for r in rows]
        if not ids:
            return requeued
        moved = await _requeue_batch(conn, ids, trail, by_ids=False)
        requeued += moved
        after = ids[-1]
        if on_progress is not None:
            on_progress(moved)
        if len(ids) < batch_size:
            return requeued


_PURGE_BATCHES = {State.ACKNOWLEDGED: sql.PURGE_ACKNOWLEDGED, State.DEAD: sql.PURGE_DEAD}


async def count_purgeable(
    conn: asyncpg.Connection, older_than: timedelta, *, include_dead: bool = False
) -> PurgeCounts:
    """How many rows a purge with these arguments would delete, by state."""
    cutoff = await conn.fetchval(sql.CUTOFF, older_than)
    r = await conn.fetchrow(sql.COUNT_PURGEABLE, cutoff, include_dead)
    assert r is not None
    return PurgeCounts(acknowledged=r["acknowledged"], dead=r["dead"])


async def purge(
    conn: asyncpg.Connection,
    older_than: timedelta,
    *,
    actor: Actor,
    include_dead: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> PurgeCounts:
    """Delete acknowledged (and, if asked, dead) rows older than ``older_than``, in batches.

    Audited for ``actor`` (not a dry run): the arguments, and each batch's count and state in
    the batch's transaction.
    """
    if dry_run:
        return await count_purgeable(conn, older_than, include_dead=include_dead)
    cutoff = await conn.fetchval(sql.CUTOFF, older_than)
    arguments = {"older_than_s": older_than.total_seconds(), "include_dead": include_dead}
    trail = Trail(AuditAction.PURGE, actor, arguments)
    deleted: dict[State, int] = {State.ACKNOWLEDGED: 0, State.DEAD: 0}
    for state, batch in _PURGE_BATCHES.items():
        if state is State.DEAD and not include_dead:
            continue
        while True:
            async with conn.transaction():
                count: int = await conn.fetchval(batch, cutoff, batch_size)
                await trail.note(conn, count, state=state.value)
            deleted[state] += count
            if on_progress is not None:
                on_progress(count)
            if count < batch_size:
                break
    await trail.close(conn)
    return PurgeCounts(acknowledged=deleted[State.ACKNOWLEDGED], dead=deleted[State.DEAD])


async def stats(conn: asyncpg.Connection, *, top: int = TOP_REASONS) -> Stats:
    """Counts by state, backlog age, recent dead letters and deliveries, top dead reasons."""
    r = await conn.fetchrow(sql.STATS)
    assert r is not None
    reasons = await top_dead_reasons(conn, top)
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
        top_dead_reasons=reasons,
    )


async def top_dead_reasons(conn: asyncpg.Connection, top: int) -> list[tuple[str, int]]:
    """The ``top`` dead-letter reasons, each masked by a sample row's own values, then merged.

    This worker writes reasons already masked; a reason an older worker wrote may quote the
    values of the message it was about, which every row of its group shares.
    """
    groups = await conn.fetch(sql.DEAD_REASONS, top * _REASON_GROUPS_READ)
    samples = await conn.fetch(sql.PAYLOADS, [g["sample_id"] for g in groups])
    payloads = {r["id"]: json.loads(r["payload"]) for r in samples}
    merged: Counter[str] = Counter()
    for g in groups:
        known = QuotedValues.of_payload(payloads.get(g["sample_id"]))
        merged[known.mask(g["reason"])] += g["n"]
    return sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:top]

"""The worker's statements: claim a batch, settle outcomes, release claims, listen for work.

Every write is guarded by the lease token it was claimed with, so a worker whose lease ran out
and was taken over cannot overwrite the new owner's outcome.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from outbox_worker.config import asyncpg_dsn
from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.models import LeaseToken, Message, MessageId, Settlement, State
from outbox_worker.schema import NOTIFY_CHANNEL
from outbox_worker.store.connection import TRANSIENT_ERRORS, connect, translate_errors

log = structlog.get_logger("outbox_worker.store")

_LISTEN_CONNECT_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, DatabaseUnavailable)
_PING_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
_CLOSE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *_PING_ERRORS)

# One statement claims a batch. The inner SELECT walks the partial pending index in due order;
# a row whose lease ran out is simply due again (claiming moves available_at to the lease end),
# so crashed workers' rows come back without a separate reaper. SKIP LOCKED lets any number of
# workers claim side by side without waiting on each other.
CLAIM_BATCH = """
WITH due AS (
    SELECT id FROM outbox.messages
    WHERE state = 'pending' AND available_at <= now()
    ORDER BY available_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox.messages AS m
SET lease_token = $2, claimed_at = now(), available_at = now() + $3::interval
FROM due
WHERE m.id = due.id
RETURNING m.id, m.payload::text AS body, m.attempts,
    -- max_age counts from a requeue, or a requeued message would be dead at its first failure
    coalesce(m.requeued_at, m.created_at) AS age_from
"""

# One statement settles a whole flush: each row gets its own state, next time and record, and
# only if it is still pending under the token it was claimed with. Tokens travel once per flush
# ($2) and rows point into that array: a flush holds rows of only a few claims.
SETTLE = """
UPDATE outbox.messages AS m SET
    state = u.state,
    attempts = m.attempts + u.spent,
    available_at = coalesce(u.available_at, m.available_at),
    lease_token = NULL,
    acknowledged_at = CASE WHEN u.state = 'acknowledged' THEN now() ELSE m.acknowledged_at END,
    dead_at = CASE WHEN u.state = 'dead' THEN now() END,
    last_status = u.status,
    last_error = u.error,
    last_response = u.response,
    history = outbox.history_push(
        m.history,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', u.error, 'latency_ms', u.latency_ms
        ),
        $10
    )
FROM unnest(
    $1::bigint[], $3::int[], $4::text[], $5::int[], $6::timestamptz[],
    $7::int[], $8::text[], $9::float8[], $11::jsonb[]
) AS u(id, token, state, spent, available_at, status, error, latency_ms, response)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

# The common case, plain acknowledgements, in a statement with less to encode per row.
ACKNOWLEDGE = """
UPDATE outbox.messages AS m SET
    state = 'acknowledged',
    attempts = m.attempts + 1,
    lease_token = NULL,
    acknowledged_at = now(),
    last_status = u.status,
    last_error = NULL,
    last_response = NULL,
    history = outbox.history_push(
        m.history,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', NULL, 'latency_ms', u.latency_ms
        ),
        $6
    )
FROM unnest($1::bigint[], $3::int[], $4::int[], $5::float8[]) AS u(id, token, status, latency_ms)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

RELEASE = """
UPDATE outbox.messages AS m
SET lease_token = NULL, available_at = now()
FROM unnest($1::bigint[], $2::uuid[]) AS u(id, token)
WHERE m.id = u.id AND m.lease_token = u.token AND m.state = 'pending'
RETURNING m.id
"""

SECONDS_UNTIL_DUE = """
SELECT greatest(0, extract(epoch FROM min(available_at) - now()))::float8
FROM outbox.messages WHERE state = 'pending'
"""


class PostgresStore:
    """The Store port on PostgreSQL: a small asyncpg pool plus one LISTEN connection."""

    def __init__(self, database_url: str, *, history_cap: int, listen_check_s: float = 5.0) -> None:
        self._url = database_url
        self._history_cap = history_cap
        self._listen_check_s = listen_check_s
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the connection pool (DatabaseUnavailable if the database is unreachable)."""
        with translate_errors(self._url):
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self._url),
                min_size=1,
                max_size=3,
                timeout=10,
                command_timeout=30,
                server_settings={"application_name": "outbox-worker"},
            )

    async def close(self) -> None:
        """Close the pool, waiting briefly for statements in progress."""
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except _CLOSE_ERRORS:
                self._pool.terminate()
            self._pool = None

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        assert self._pool is not None, "open() the store first"
        with translate_errors(self._url):
            return list(await self._pool.fetch(query, *args))

    async def claim(self, limit: int, lease: timedelta) -> list[Message]:
        """Take up to ``limit`` due rows under a new lease token."""
        token = LeaseToken(uuid.uuid4())
        rows = await self._fetch(CLAIM_BATCH, limit, token, lease)
        return [
            Message(
                id=MessageId(r["id"]),
                body=r["body"].encode(),
                attempts=r["attempts"],
                created_at=r["age_from"],
                lease_token=token,
            )
            for r in rows
        ]

    async def settle(self, settlements: Sequence[Settlement]) -> int:
        """Write outcomes (plain acknowledgements, then the rest); returns rows applied."""
        plain: list[Settlement] = []
        other: list[Settlement] = []
        for s in settlements:
            (plain if _is_plain_ack(s) else other).append(s)
        applied = 0
        if plain:
            tokens, index = _token_index(plain)
            rows = await self._fetch(
                ACKNOWLEDGE,
                [s.message_id for s in plain],
                tokens,
                index,
                [s.status for s in plain],
                [round(s.latency_s * 1000, 1) for s in plain],
                self._history_cap,
            )
            applied += len(rows)
        if other:
            tokens, index = _token_index(other)
            rows = await self._fetch(
                SETTLE,
                [s.message_id for s in other],
                tokens,
                index,
                [s.state.value for s in other],
                [1 if s.attempt_spent else 0 for s in other],
                [s.available_at for s in other],
                [s.status for s in other],
                [s.error for s in other],
                [round(s.latency_s * 1000, 1) for s in other],
                self._history_cap,
                [json.dumps(s.details) if s.details else None for s in other],
            )
            applied += len(rows)
        return applied

    async def release(self, messages: Sequence[Message]) -> int:
        """Hand claimed rows back at once; returns how many were still ours."""
        if not messages:
            return 0
        rows = await self._fetch(
            RELEASE, [m.id for m in messages], [m.lease_token for m in messages]
        )
        return len(rows)

    async def seconds_until_due(self) -> float | None:
        """Seconds until the earliest pending row is due, or None when nothing is pending."""
        rows = await self._fetch(SECONDS_UNTIL_DUE)
        value = rows[0][0]
        return None if value is None else float(value)

    async def listen(self, wake: Callable[[], None]) -> None:
        """LISTEN on the enqueue channel, reconnecting forever; a hint only, polling backs it."""
        delay = 0.5
        while True:
            try:
                conn = await connect(self._url, application_name="outbox-worker-listen")
            except _LISTEN_CONNECT_ERRORS as exc:
                log.warning("listen.connect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            try:
                await self._listen_on(conn, wake)
            finally:
                await asyncio.shield(_close(conn))

    async def _listen_on(self, conn: asyncpg.Connection, wake: Callable[[], None]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: wake())
        log.debug("listen.started", channel=NOTIFY_CHANNEL)
        wake()  # anything enqueued while we were not listening is due now
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), timeout=self._listen_check_s)
            except TimeoutError:
                # A half-open TCP connection never terminates by itself: ping it.
                try:
                    await conn.fetchval("SELECT 1", timeout=self._listen_check_s)
                except _PING_ERRORS:
                    break
        log.warning("listen.lost", reconnecting=True)


def _is_plain_ack(s: Settlement) -> bool:
    return s.state is State.ACKNOWLEDGED and s.error is None and not s.details


def _token_index(settlements: Sequence[Settlement]) -> tuple[list[LeaseToken], list[int]]:
    """The distinct lease tokens, and for each settlement its token's 1-based position."""
    positions: dict[LeaseToken, int] = {}
    index = [positions.setdefault(s.lease_token, len(positions) + 1) for s in settlements]
    return list(positions), index


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=2)
    except _CLOSE_ERRORS:
        conn.terminate()

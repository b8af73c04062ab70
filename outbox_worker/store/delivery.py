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

from outbox_worker.config import asyncpg_dsn, redact_url
from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.limits import MAX_PAYLOAD_BYTES
from outbox_worker.models import Backlog, LeaseToken, Message, MessageId, Settlement, State
from outbox_worker.schema import NOTIFY_CHANNEL, SEND_SCHEDULE
from outbox_worker.store.connection import (
    POOLER_SAFE,
    TRANSIENT_ERRORS,
    connect,
    translate_errors,
)
from outbox_worker.store.housekeeping import BACKLOG, PURGE_EXPIRED, RETENTION_LOCK

log = structlog.get_logger("outbox_worker.store")

_LISTEN_CONNECT_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, DatabaseUnavailable)
_PING_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
_LISTEN_ERRORS: tuple[type[Exception], ...] = (
    *_PING_ERRORS,
    DatabaseUnavailable,
    StatementRejected,
)
_CLOSE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *_PING_ERRORS)
# How often a worker whose notifications did not arrive checks again (a NOTIFY round trip).
LISTEN_RECHECK_S = 60.0

# One statement claims a batch. `due` walks the partial pending index in due order; a row whose
# lease ran out is simply due again (claiming moves available_at to the lease end), so crashed
# workers' rows come back without a separate reaper. SKIP LOCKED lets any number of workers claim
# side by side without waiting on each other. `sized` keeps rows while their bodies fit in the
# worker's byte budget ($4); rows that cannot be sent (rows other services wrote: not a JSON
# object, or past the size limit $5) are claimed without their body, to be dead-lettered unsent.
# The age is measured on the database's clock, as every due time is.
CLAIM_BATCH = """
WITH due AS (
    SELECT id, available_at, payload FROM outbox.messages
    WHERE state = 'pending' AND available_at <= now()
    ORDER BY available_at, id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
measured AS (
    SELECT id, available_at, body, octet_length(body) AS bytes, kind,
        kind = 'object' AND octet_length(body) <= $5 AS sendable
    FROM due, LATERAL (SELECT payload::text AS body, jsonb_typeof(payload) AS kind) AS t
),
sized AS (
    SELECT id, body, bytes, kind, sendable,
        sum(CASE WHEN sendable THEN bytes ELSE 0 END)
            OVER (ORDER BY available_at, id) AS running
    FROM measured
)
UPDATE outbox.messages AS m
SET lease_token = $2, claimed_at = now(), available_at = now() + $3::interval
FROM sized
WHERE m.id = sized.id AND sized.running <= $4
RETURNING m.id, CASE WHEN sized.sendable THEN sized.body END AS body, sized.bytes, sized.kind,
    m.attempts,
    -- max_age counts from a requeue, or a requeued message would be dead at its first failure
    extract(epoch FROM now() - coalesce(m.requeued_at, m.created_at))::float8 AS age_s
"""

# One statement settles a whole flush: each row gets its own state, next time and record, and
# only if it is still pending under the token it was claimed with. Tokens travel once per flush
# ($2) and rows point into that array: a flush holds rows of only a few claims. Next times are
# the database's now() plus the policy's delay, never a worker host's clock. Another service may
# have written any history or attempts: a history that is not an array starts afresh and a count
# at the bound of messages_attempts_bounded (1,000,000) stays there, so no row can make the write
# fail (without that check, the integer's own limit is far above it).
SETTLE = """
UPDATE outbox.messages AS m SET
    state = u.state,
    attempts = CASE WHEN m.attempts < 1000000 THEN m.attempts + u.spent ELSE m.attempts END,
    available_at = CASE WHEN u.delay_s IS NULL THEN m.available_at
                        ELSE now() + make_interval(secs => u.delay_s) END,
    lease_token = NULL,
    acknowledged_at = CASE WHEN u.state = 'acknowledged' THEN now() ELSE m.acknowledged_at END,
    dead_at = CASE WHEN u.state = 'dead' THEN now() END,
    last_status = u.status,
    last_error = u.error,
    last_response = u.response,
    history = outbox.history_push(
        CASE WHEN jsonb_typeof(m.history) = 'array' THEN m.history ELSE '[]'::jsonb END,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', u.error, 'latency_ms', u.latency_ms
        ),
        $10
    )
FROM unnest(
    $1::bigint[], $3::int[], $4::text[], $5::int[], $6::float8[],
    $7::int[], $8::text[], $9::float8[], $11::jsonb[]
) AS u(id, token, state, spent, delay_s, status, error, latency_ms, response)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

# The common case, plain acknowledgements, in a statement with less to encode per row.
ACKNOWLEDGE = """
UPDATE outbox.messages AS m SET
    state = 'acknowledged',
    attempts = CASE WHEN m.attempts < 1000000 THEN m.attempts + 1 ELSE m.attempts END,
    lease_token = NULL,
    acknowledged_at = now(),
    last_status = u.status,
    last_error = NULL,
    last_response = NULL,
    history = outbox.history_push(
        CASE WHEN jsonb_typeof(m.history) = 'array' THEN m.history ELSE '[]'::jsonb END,
        jsonb_build_object(
            'at', now(), 'status', u.status, 'error', NULL, 'latency_ms', u.latency_ms
        ),
        $6
    )
FROM unnest($1::bigint[], $3::int[], $4::int[], $5::float8[]) AS u(id, token, status, latency_ms)
WHERE m.id = u.id AND m.lease_token = ($2::uuid[])[u.token] AND m.state = 'pending'
RETURNING m.id
"""

# The last resort for one row whose outcome could not be written (the database refused it): dead,
# with the database's reason, touching nothing else of a row that may hold anything.
DEAD_UNWRITABLE = """
UPDATE outbox.messages SET
    state = 'dead', dead_at = now(), lease_token = NULL, last_status = $3, last_error = $4
WHERE id = $1 AND lease_token = $2 AND state = 'pending'
RETURNING id
"""

RELEASE = """
UPDATE outbox.messages AS m
SET lease_token = NULL, available_at = now()
FROM unnest($1::bigint[], $2::uuid[]) AS u(id, token)
WHERE m.id = u.id AND m.lease_token = u.token AND m.state = 'pending'
RETURNING m.id
"""

# NULL when nothing is pending. (greatest() ignores a NULL argument, so greatest(0, NULL) would
# say "due now" of an empty queue and make an idle worker claim every 50 ms.)
SECONDS_UNTIL_DUE = """
SELECT CASE WHEN min(available_at) IS NOT NULL
            THEN greatest(0, extract(epoch FROM min(available_at) - now()))::float8 END
FROM outbox.messages WHERE state = 'pending'
"""

# The fleet's rate limit: reserve the next $2 seconds of the shared send schedule and say when
# they begin. The row lock serializes reservations, so spans never overlap; clock_timestamp()
# (not now(), the transaction's start) is read once the lock is held, so a span never starts
# before a span reserved by a statement that committed first. An idle schedule restarts at the
# present: idle time earns no burst. A next_slot_at written far ahead (by hand, by another
# service) is pulled back to $3 seconds from now, so no row can stall the fleet. The upsert
# recreates a deleted row.
RESERVE_SEND_TIME = """
INSERT INTO outbox.send_schedule AS s (name, next_slot_at)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (name) DO UPDATE SET next_slot_at = greatest(
        least(s.next_slot_at, clock_timestamp() + make_interval(secs => $3)),
        clock_timestamp()
    ) + make_interval(secs => $2)
RETURNING greatest(0, extract(epoch FROM s.next_slot_at - clock_timestamp())::float8 - $2)
"""
# How far ahead a schedule may already be reserved before a reservation trusts it no longer.
SCHEDULE_HORIZON_S = 60.0


class PostgresStore:
    """The Store port on PostgreSQL: a small asyncpg pool plus one LISTEN connection."""

    def __init__(
        self,
        database_url: str,
        *,
        history_cap: int,
        listen_url: str | None = None,
        listen_check_s: float = 5.0,
    ) -> None:
        self._url = database_url
        self._listen_url = listen_url or database_url
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
                **POOLER_SAFE,
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

    async def claim(self, limit: int, lease: timedelta, max_bytes: int) -> list[Message]:
        """Take up to ``limit`` due rows, their bodies within ``max_bytes``, under a new lease."""
        token = LeaseToken(uuid.uuid4())
        rows = await self._fetch(CLAIM_BATCH, limit, token, lease, max_bytes, MAX_PAYLOAD_BYTES)
        return [
            Message(
                id=MessageId(r["id"]),
                body=b"" if r["body"] is None else r["body"].encode(),
                attempts=r["attempts"],
                age=timedelta(seconds=r["age_s"]),
                lease_token=token,
                unsendable=None if r["body"] is not None else _unsendable(r["kind"], r["bytes"]),
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
                [None if s.delay is None else s.delay.total_seconds() for s in other],
                [s.status for s in other],
                [s.error for s in other],
                [round(s.latency_s * 1000, 1) for s in other],
                self._history_cap,
                [json.dumps(s.response) if s.response else None for s in other],
            )
            applied += len(rows)
        return applied

    async def dead_letter_unwritable(self, settlement: Settlement, reason: str) -> int:
        """Dead-letter one row whose outcome the database refused, with ``reason``; 1 if applied."""
        rows = await self._fetch(
            DEAD_UNWRITABLE,
            settlement.message_id,
            settlement.lease_token,
            settlement.status,
            reason,
        )
        return len(rows)

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

    async def reserve_send_time(self, span_s: float) -> float:
        """Reserve the next ``span_s`` seconds of the fleet's send schedule; seconds until then."""
        rows = await self._fetch(RESERVE_SEND_TIME, SEND_SCHEDULE, span_s, SCHEDULE_HORIZON_S)
        return float(rows[0][0])

    async def backlog(self) -> Backlog:
        """Pending due and not yet due, the oldest pending age and the dead count, in one go."""
        row = (await self._fetch(BACKLOG))[0]
        return Backlog(
            due=row["due"],
            not_due=row["not_due"],
            oldest_pending_s=row["oldest_pending_s"],
            dead=row["dead"],
        )

    async def purge_expired(self, state: State, older_than: timedelta, limit: int) -> int | None:
        """Delete one batch of expired rows under the retention lock; None if another has it."""
        row = (await self._fetch(PURGE_EXPIRED, state.value, older_than, limit, RETENTION_LOCK))[0]
        deleted: int = row["deleted"]
        return deleted if row["held"] else None

    async def listen(self, wake: Callable[[], None]) -> None:
        """LISTEN on the enqueue channel, reconnecting forever; a hint only, polling backs it.

        When a notification sent through the pool does not reach the LISTEN connection (a
        transaction pooler such as PgBouncer sits in between), it logs ``listen.unavailable``
        once and checks again every minute: the worker polls meanwhile, and a check that failed
        only because the database was slow to answer does not end LISTEN for good.
        """
        delay = 0.5
        warned = False
        while True:
            try:
                conn = await connect(self._listen_url, application_name="outbox-worker-listen")
            except _LISTEN_CONNECT_ERRORS as exc:
                log.warning("listen.connect_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            unavailable = False
            try:
                if await self._notifications_arrive(conn):
                    delay = 0.5
                    await self._listen_on(conn, wake)
                else:
                    unavailable = True
            except _LISTEN_ERRORS as exc:
                # LISTEN refused (a permission, a pooler): polling still finds the work; try
                # again later rather than end the worker.
                log.warning("listen.failed", error=type(exc).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                await asyncio.shield(_close(conn))
            if unavailable:
                if not warned:
                    warned = True
                    log.warning(
                        "listen.unavailable",
                        database_url=redact_url(self._listen_url),
                        hint="notifications do not reach this connection (a transaction pooler "
                        "such as PgBouncer?); set OUTBOX_LISTEN_DATABASE_URL to a direct "
                        "connection to wake workers at once",
                    )
                await asyncio.sleep(LISTEN_RECHECK_S)

    async def _notifications_arrive(self, conn: asyncpg.Connection) -> bool:
        """Whether a NOTIFY sent through the pool reaches ``conn``'s LISTEN, within a deadline.

        A test of the one thing LISTEN needs rather than a guess at what sits in between: through
        a transaction pooler the LISTEN stays on whichever server connection ran it, and the
        notification goes to another client or nowhere. The pool's NOTIFY is a separate client,
        so a pooler cannot hand it the listening server connection and fake a success.
        """
        channel = f"outbox_probe_{uuid.uuid4().hex}"
        arrived = asyncio.Event()

        def heard(*_args: object) -> None:
            arrived.set()

        def lost(_conn: object) -> None:
            arrived.set()  # wakes the wait below, which then sees the connection is gone

        conn.add_termination_listener(lost)
        await conn.add_listener(channel, heard)
        await self._fetch("SELECT pg_notify($1, '')", channel)
        try:
            async with asyncio.timeout(self._listen_check_s):
                await arrived.wait()
        except TimeoutError:
            pass
        if conn.is_closed():
            # The connection died during the check: that says nothing about a pooler.
            raise ConnectionResetError("the LISTEN connection was lost during its check")
        conn.remove_termination_listener(lost)
        if not arrived.is_set():
            return False
        await conn.remove_listener(channel, heard)
        return True

    async def _listen_on(self, conn: asyncpg.Connection, wake: Callable[[], None]) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: wake())
        log.info(
            "listen.started", channel=NOTIFY_CHANNEL, database_url=redact_url(self._listen_url)
        )
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
    return s.state is State.ACKNOWLEDGED and s.error is None and not s.response


def _unsendable(kind: str, size: int) -> str:
    if kind != "object":
        return f"the stored payload is a JSON {kind}, not an object (written around outbox.enqueue)"
    return f"the stored payload is {size} bytes, over the limit of {MAX_PAYLOAD_BYTES}"


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

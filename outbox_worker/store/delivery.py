"""The Store port on PostgreSQL: the worker's claims, outcomes, hand-backs and upkeep queries.

The statements themselves live in ``delivery_queries`` (claim, settle, release, schedule) and
``housekeeping`` (backlog, retention); LISTEN runs on a connection of its own (``listen``).
Every write is guarded by the lease token it was claimed with, so a worker whose lease ran out
and was taken over cannot overwrite the new owner's outcome.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from outbox_worker.errors import DatabaseUnavailable
from outbox_worker.models import (
    Backlog,
    LeaseToken,
    Message,
    MessageId,
    PauseState,
    Settlement,
    State,
    WorkerBeat,
)
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES
from outbox_worker.ports import Hints
from outbox_worker.schema import FLEET_PAUSE, SEND_SCHEDULE
from outbox_worker.settings.config import asyncpg_dsn
from outbox_worker.store.connection import (
    CLOSE_ERRORS,
    POOLER_SAFE,
    detect_dead_peer,
    direct_route,
    translate_errors,
)
from outbox_worker.store.delivery_queries import (
    ACKNOWLEDGE,
    CLAIM_BATCH,
    DEAD_UNWRITABLE,
    RELEASE,
    RESERVE_SEND_TIME,
    SCHEDULE_HORIZON_S,
    SECONDS_UNTIL_DUE,
    SETTLE,
)
from outbox_worker.store.fleet_queries import (
    FORGET_WORKERS,
    HEARTBEAT,
    PAUSE_STATE,
    PURGE_EXPIRED_AUDIT,
)
from outbox_worker.store.housekeeping import BACKLOG, PURGE_EXPIRED, RETENTION_LOCK
from outbox_worker.store.listen import listen

__all__ = ["SCHEDULE_HORIZON_S", "PostgresStore"]

log = structlog.get_logger("outbox_worker.store")


class PostgresStore:
    """The Store port on PostgreSQL: a small asyncpg pool plus one LISTEN connection."""

    def __init__(
        self,
        database_url: str,
        *,
        history_cap: int,
        listen_url: str | None = None,
        listen_check_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self._url = database_url
        self._timeout_s = timeout_s
        self._listen_url = listen_url or database_url
        self._history_cap = history_cap
        self._listen_check_s = listen_check_s
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        """Create the connection pool (DatabaseUnavailable if the database is unreachable).

        Statements are prepared once and kept only when a probe connection shows it ends at
        PostgreSQL itself; behind a pooler (or when that cannot be shown) each is parsed anew.
        """
        direct = await direct_route(self._url, timeout_s=self._timeout_s)
        # asyncpg's default cache (100 statements) on a direct route, none through a pooler.
        cache: dict[str, Any] = {} if direct else POOLER_SAFE
        with translate_errors(self._url):
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self._url),
                min_size=1,
                max_size=3,
                # A partition drops packets without a reset: nothing errors by itself, so every
                # connection attempt and statement has a deadline, and the socket finds a dead
                # path on its own (keepalives, unacknowledged data).
                timeout=self._timeout_s,
                command_timeout=self._timeout_s,
                init=functools.partial(detect_dead_peer, timeout_s=self._timeout_s),
                server_settings={"application_name": "outbox-worker"},
                **cache,
            )
        log.info("store.opened", direct_connection=direct, statement_cache=not cache)

    async def close(self) -> None:
        """Close the pool, waiting briefly for statements in progress."""
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except CLOSE_ERRORS:
                self._pool.terminate()
            self._pool = None

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        assert self._pool is not None, "open() the store first"
        try:
            with translate_errors(self._url):
                return list(await self._pool.fetch(query, *args))
        except DatabaseUnavailable:
            # After a failover the server behind a pooled connection may be a demoted primary
            # (read-only) or gone: connect afresh, which finds the primary among the URL's hosts.
            await self._pool.expire_connections()
            raise

    async def claim(self, limit: int, lease: timedelta, max_bytes: int) -> list[Message]:
        """Take up to ``limit`` due rows, their bodies within ``max_bytes``, under a new lease."""
        token = LeaseToken(uuid.uuid4())
        rows = await self._fetch(CLAIM_BATCH, limit, token, lease, max_bytes, MAX_PAYLOAD_BYTES)
        return [
            Message(
                MessageId(id_),
                b"" if body is None else body,
                attempts,
                timedelta(seconds=age_s),
                token,
                None if body is not None else _unsendable(kind, size),
                traceparent,
                tracestate,
            )
            for id_, body, size, kind, attempts, age_s, traceparent, tracestate in rows
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

    async def purge_expired_audit(self, older_than: timedelta, limit: int) -> int | None:
        """Delete one batch of expired audit rows under the retention lock; None if another
        process has it."""
        row = (await self._fetch(PURGE_EXPIRED_AUDIT, older_than, limit, RETENTION_LOCK))[0]
        deleted: int = row["deleted"]
        return deleted if row["held"] else None

    async def heartbeat(self, beat: WorkerBeat) -> PauseState:
        """Register or refresh this worker's registry row and read the fleet's pause."""
        row = (
            await self._fetch(
                HEARTBEAT,
                beat.worker_id,
                beat.host,
                beat.pid,
                beat.version,
                beat.state.value,
                None if beat.paused_by is None else beat.paused_by.value,
                beat.listening,
                beat.sends_last_minute,
                beat.in_flight,
                FLEET_PAUSE,
            )
        )[0]
        return PauseState(**dict(row))  # columns named after the fields

    async def fleet_pause(self) -> PauseState:
        """Read the fleet's pause."""
        rows = await self._fetch(PAUSE_STATE, FLEET_PAUSE)
        return PauseState(**dict(rows[0])) if rows else PauseState(paused=False)

    async def forget_workers(self, older_than: timedelta) -> int:
        """Delete the registry rows of workers not seen for ``older_than``."""
        assert self._pool is not None, "open() the store first"
        with translate_errors(self._url):
            status: str = await self._pool.execute(FORGET_WORKERS, older_than)
        return int(status.rsplit(" ", 1)[-1])  # "DELETE n"

    async def listen(self, hints: Hints) -> None:
        """LISTEN for enqueues and pause changes, reconnecting forever (see ``store.listen``)."""
        await listen(
            self._listen_url,
            hints,
            notify=self._notify,
            check_s=self._listen_check_s,
            timeout_s=self._timeout_s,
        )

    async def _notify(self, channel: str) -> None:
        await self._fetch("SELECT pg_notify($1, '')", channel)


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

"""LISTEN for enqueues (and changes of the fleet's pause) on a connection of its own: hints that
work is due or the pause changed, backed by polling.

A transaction pooler (PgBouncer in transaction mode) cannot carry LISTEN, so before trusting it
the connection checks that a NOTIFY sent through the worker's pool actually arrives; when it
does not, the worker polls and the check is repeated now and then.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import asyncpg
import structlog

from outbox_worker.errors import DatabaseUnavailable, StatementRejected
from outbox_worker.ports import Hints
from outbox_worker.schema import NOTIFY_CHANNEL
from outbox_worker.settings.config import redact_url
from outbox_worker.store.connection import TRANSIENT_ERRORS, close_quietly, connect

log = structlog.get_logger("outbox_worker.store")

_LISTEN_CONNECT_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, DatabaseUnavailable)
_PING_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
_LISTEN_ERRORS: tuple[type[Exception], ...] = (
    *_PING_ERRORS,
    DatabaseUnavailable,
    StatementRejected,
)
# How often a worker whose notifications did not arrive checks again (a NOTIFY round trip).
LISTEN_RECHECK_S = 60.0
# Where `pause` and `resume` notify (store/fleet.py FLEET_CHANNEL; named here too so the worker's
# path does not import the operators' module).
FLEET_CHANNEL: Final = "outbox_fleet"

# Sends ``pg_notify(channel, '')`` through the worker's pool (not the listening connection).
Notify = Callable[[str], Awaitable[None]]


async def listen(
    listen_url: str,
    hints: Hints,
    *,
    notify: Notify,
    check_s: float,
    timeout_s: float | None = None,
) -> None:
    """LISTEN on the enqueue and fleet channels, reconnecting forever; hints only, polling backs
    them. ``hints.listening`` hears whether notifications arrive, each time that changes.

    When a notification sent through the pool (``notify``) does not reach the LISTEN connection
    (a transaction pooler such as PgBouncer sits in between), it logs ``listen.unavailable``
    once and checks again every minute: the worker polls meanwhile, and a check that failed
    only because the database was slow to answer does not end LISTEN for good.
    """
    delay = 0.5
    warned = False
    while True:
        try:
            conn = await connect(
                listen_url, application_name="outbox-worker-listen", timeout_s=timeout_s
            )
        except _LISTEN_CONNECT_ERRORS as exc:
            log.warning("listen.connect_failed", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            continue
        unavailable = False
        try:
            if await _notifications_arrive(conn, notify, check_s):
                delay = 0.5
                await _listen_on(conn, hints, listen_url, check_s)
            else:
                unavailable = True
        except _LISTEN_ERRORS as exc:
            # LISTEN refused (a permission, a pooler): polling still finds the work; try
            # again later rather than end the worker.
            log.warning("listen.failed", error=type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        finally:
            hints.listening(False)
            await asyncio.shield(close_quietly(conn))
        if unavailable:
            if not warned:
                warned = True
                log.warning(
                    "listen.unavailable",
                    database_url=redact_url(listen_url),
                    hint="notifications do not reach this connection (a transaction pooler "
                    "such as PgBouncer?); set OUTBOX_LISTEN_DATABASE_URL to a direct "
                    "connection to wake workers at once",
                )
            await asyncio.sleep(LISTEN_RECHECK_S)


async def _notifications_arrive(conn: asyncpg.Connection, notify: Notify, check_s: float) -> bool:
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
    await notify(channel)
    try:
        async with asyncio.timeout(check_s):
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


async def _listen_on(
    conn: asyncpg.Connection, hints: Hints, listen_url: str, check_s: float
) -> None:
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _conn: lost.set())
    await conn.add_listener(NOTIFY_CHANNEL, lambda *_args: hints.work())
    await conn.add_listener(FLEET_CHANNEL, lambda *_args: hints.fleet())
    log.info("listen.started", channel=NOTIFY_CHANNEL, database_url=redact_url(listen_url))
    hints.listening(True)
    hints.work()  # anything enqueued while we were not listening is due now
    hints.fleet()  # and the pause may have changed meanwhile
    while not lost.is_set():
        try:
            await asyncio.wait_for(lost.wait(), timeout=check_s)
        except TimeoutError:
            # A half-open TCP connection never terminates by itself: ping it.
            try:
                await conn.fetchval("SELECT 1", timeout=check_s)
            except _PING_ERRORS:
                break
    log.warning("listen.lost", reconnecting=True)

"""Open asyncpg connections and check the outbox schema, translating driver errors to ours."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlsplit

import asyncpg
import structlog

from outbox_worker.errors import (
    ConfigError,
    DatabaseUnavailable,
    LoginRefused,
    SchemaNotReady,
    StatementRejected,
)
from outbox_worker.migrate import SCHEMA_HEAD, SchemaFit, is_ahead, schema_fit, schema_fit_text
from outbox_worker.settings.config import asyncpg_dsn, redact_url
from outbox_worker.settings.urls import hide_url_secrets

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT_S = 10.0
# Behind a transaction-pooling PgBouncer each transaction may run on another server connection,
# so nothing may outlive a transaction: no named (cached) prepared statements. With the cache
# off asyncpg (>= 0.29) parses, binds and runs each statement in one Sync, which any pooler
# keeps on one server connection. Costs a parse per statement; buys "works behind PgBouncer
# with no setting". Nothing here relies on other session state either (SET, session advisory
# locks, temporary tables); LISTEN has its own connection (store/listen.py).
POOLER_SAFE: Final[dict[str, Any]] = {"statement_cache_size": 0}
# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Class 57 (operator intervention): shutdown, "starting up", a canceled statement (a DBA's
    # statement_timeout or pg_cancel_backend, a cancel that arrived late after a partition).
    asyncpg.OperatorInterventionError,
    # Answers about the server's state, never about a row: a serialization failure or deadlock
    # (class 40, also a standby's "conflict with recovery"), a lock_timeout, out of resources
    # (class 53: disk full, too many connections). Retried later like a refused connection.
    asyncpg.TransactionRollbackError,
    asyncpg.LockNotAvailableError,
    asyncpg.InsufficientResourcesError,
)
# Answers of a server that takes no writes: a hot standby ("cannot execute ... during recovery"
# or "... in a read-only transaction", both SQLSTATE 25006), a primary started read-only, and
# no host of a multi-host URL matching target_session_attrs.
READ_ONLY_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.TargetServerAttributeNotMatched,
)
# What closing a connection may raise when its peer is gone or slow.
CLOSE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *TRANSIENT_ERRORS, asyncpg.PostgresError)


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn connection-level driver errors into DatabaseUnavailable."""
    try:
        yield
    except asyncpg.ClientConfigurationError as exc:  # e.g. ?sslmode=bogus: no retry will help
        problem = hide_url_secrets(str(exc), url)
        raise ConfigError(f"OUTBOX_DATABASE_URL {redact_url(url)}: {problem}") from exc
    except READ_ONLY_ERRORS as exc:
        # After a failover the old primary may come back read-only, or a name may point at a
        # standby: the database is unavailable for writes, no statement or message is at fault.
        raise DatabaseUnavailable(
            f"database {redact_url(url)} is read-only (a standby, or a primary demoted by a "
            f"failover): {rejection(exc) if isinstance(exc, asyncpg.PostgresError) else exc}; "
            "waiting for a primary (list every host in the URL with "
            "target_session_attrs=read-write to find it)"
        ) from exc
    except TRANSIENT_ERRORS as exc:
        problem = hide_url_secrets(str(exc), url)
        raise DatabaseUnavailable(
            f"database {redact_url(url)} is unavailable: {type(exc).__name__}: {problem}"
        ) from exc
    except asyncpg.InvalidCatalogNameError as exc:
        raise LoginRefused(f"database {redact_url(url)} does not exist") from exc
    except asyncpg.InvalidAuthorizationSpecificationError as exc:
        problem = hide_url_secrets(str(exc), url)
        raise LoginRefused(f"database {redact_url(url)} refused the login: {problem}") from exc
    except asyncpg.InvalidPasswordError as exc:
        raise LoginRefused(f"database {redact_url(url)} refused the password") from exc
    except asyncpg.PostgresError as exc:  # after the connection-level ones above
        raise StatementRejected(rejection(exc), sqlstate=exc.sqlstate) from exc


# Quoted parts of a server message, and asyncpg's echo of a refused argument ("$3: <value>").
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|(?<=argument \$\d)\d*:.*", re.DOTALL)


def rejection(exc: asyncpg.PostgresError) -> str:
    """One line naming a refused statement's error: class, SQLSTATE, message without values."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    message = " ".join(_QUOTED.sub("…", first).split())[:200]
    return f"{type(exc).__name__} (SQLSTATE {exc.sqlstate}): {message}"


async def detect_dead_peer(conn: asyncpg.Connection, *, timeout_s: float) -> None:
    """Let the kernel find a silently dead path under ``conn`` within about ``timeout_s``.

    TCP keepalives probe an idle connection after ``timeout_s`` and give up after three lost
    probes a third of that apart; TCP_USER_TIMEOUT drops a connection whose sent data goes
    unacknowledged for ``timeout_s``. Either way the next statement fails at once instead of
    waiting for its own deadline. Linux names; elsewhere (and over a Unix socket) nothing is set.
    """
    transport = getattr(conn, "_transport", None)  # asyncpg keeps its socket's transport here
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    seconds = max(1, round(timeout_s))
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPIDLE", None), seconds),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), max(1, seconds // 3)),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), 3),
        (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), round(timeout_s * 1000)),
    ]
    for level, option, value in options:
        if option is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)


async def connect(
    url: str, *, application_name: str = "outbox-worker", timeout_s: float | None = None
) -> asyncpg.Connection:
    """Open one connection to ``url``; DatabaseUnavailable when it cannot be reached.

    With ``timeout_s`` (the worker's OUTBOX_DATABASE_TIMEOUT) connecting and every statement
    have that deadline, and the socket finds a dead path on its own (``detect_dead_peer``): a
    silent partition then fails the worker's call instead of holding it forever. Operator
    commands leave it None: their statements may rightly take long.
    """
    with translate_errors(url):
        conn: asyncpg.Connection = await asyncpg.connect(
            asyncpg_dsn(url),
            timeout=CONNECT_TIMEOUT_S if timeout_s is None else timeout_s,
            command_timeout=timeout_s,
            server_settings={"application_name": application_name},
            **POOLER_SAFE,
        )
    if timeout_s is not None:
        await detect_dead_peer(conn, timeout_s=timeout_s)
    return conn


@asynccontextmanager
async def connected(
    url: str, *, application_name: str = "outbox-worker", timeout_s: float | None = None
) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the duration of a block, closed afterwards even on cancellation."""
    conn = await connect(url, application_name=application_name, timeout_s=timeout_s)
    try:
        yield conn
    finally:
        await asyncio.shield(close_quietly(conn))  # a dead peer must not hold the caller


async def close_quietly(conn: asyncpg.Connection) -> None:
    """Close ``conn`` within 2 s, else drop it: a dead peer must not hold the caller."""
    try:
        await asyncio.wait_for(conn.close(), timeout=2)
    except CLOSE_ERRORS:
        conn.terminate()


async def schema_revision(conn: asyncpg.Connection) -> str | None:
    """The alembic revision the outbox schema is at, or None when it was never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('outbox.alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision: str | None = await conn.fetchval("SELECT version_num FROM outbox.alembic_version")
    return revision


async def lists_code(conn: asyncpg.Connection, head: str) -> bool:
    """Whether the schema's outbox.compatible_code (revision 0010 on) lists the code revision
    ``head`` as one that may run on it; False when the schema has no such table."""
    exists = await conn.fetchval(_COMPATIBLE_CODE_EXISTS)
    if not exists:
        return False
    listed: bool = await conn.fetchval(_LISTS_CODE, head)
    return listed


async def ensure_schema_ready(
    conn: asyncpg.Connection, head: str = SCHEMA_HEAD, *, announce: bool = True
) -> SchemaFit:
    """Raise SchemaNotReady unless this code (schema head ``head``) may run on the outbox schema:
    at ``head``, or newer and listing ``head`` in outbox.compatible_code (then, with
    ``announce``, one info line says so). Returns how the schema stands."""
    revision = await schema_revision(conn)
    listed = is_ahead(revision) and await lists_code(conn, head)
    fit = schema_fit(revision, lists_head=listed, head=head)
    if not fit.runs:
        raise SchemaNotReady(schema_fit_text(fit, revision, head))
    if fit is SchemaFit.AHEAD_COMPATIBLE and announce:
        # A rolling upgrade's older pod: worth one line, not a warning (the schema vouches for it).
        log.info(
            "schema.newer_accepted",
            revision=revision,
            head=head,
            detail=schema_fit_text(fit, revision, head),
        )
    return fit


# Revision 0010's marker: the code revisions that may run on the schema as it is. Two statements:
# the second names a table the first finds missing on a schema before 0010.
_COMPATIBLE_CODE_EXISTS = "SELECT to_regclass('outbox.compatible_code') IS NOT NULL"
_LISTS_CODE = "SELECT EXISTS (SELECT FROM outbox.compatible_code WHERE revision = $1)"


# Whether the server takes writes: a hot standby is in recovery; a primary may be read-only.
_WRITABLE = """
SELECT pg_is_in_recovery() AS in_recovery,
    current_setting('transaction_read_only') = 'on' AS read_only
"""


async def ensure_writable(conn: asyncpg.Connection, url: str) -> None:
    """Raise DatabaseUnavailable, saying which, when ``conn``'s server takes no writes."""
    with translate_errors(url):
        row = await conn.fetchrow(_WRITABLE)
    if row is None or not (row["in_recovery"] or row["read_only"]):
        return
    what = "a standby (in recovery)" if row["in_recovery"] else "read-only"
    raise DatabaseUnavailable(
        f"database {redact_url(url)} is {what}: waiting for a primary (list every host in the "
        "URL with target_session_attrs=read-write to find it after a failover)"
    )


# How the server sees this connection's two ends (NULL for a Unix socket).
_ENDS = """
SELECT host(inet_client_addr()) AS client_host, inet_client_port() AS client_port,
    host(inet_server_addr()) AS server_host, inet_server_port() AS server_port
"""


async def direct_route(url: str, *, timeout_s: float | None = None) -> bool:
    """Whether a connection to ``url`` ends at PostgreSQL itself (a probe connection shows it).

    A URL naming several hosts is never taken as direct: the pool's connections might not take
    the probe's route.
    """
    parts = urlsplit(url)
    if "," in parts.netloc or "," in "".join(parse_qs(parts.query).get("host", [])):
        return False
    conn = await connect(url, application_name="outbox-worker", timeout_s=timeout_s)
    try:
        with translate_errors(url):
            return await directly_connected(conn)
    finally:
        await asyncio.shield(close_quietly(conn))


async def directly_connected(conn: asyncpg.Connection) -> bool:
    """Whether ``conn``'s socket ends at the PostgreSQL backend itself: no pooler in between.

    Over TCP, the connection as this process sees it (its local and remote address and port) is
    compared with the connection the server answers on (``inet_client_*``, ``inet_server_*``):
    all four agree only when they are one and the same TCP connection. Through PgBouncer, or
    any proxy, the server sees the pooler's own connection instead. Over a Unix socket, the
    process that listens at the other end (the kernel's peer credentials) must be the parent of
    the backend serving this session, which only the postmaster is. Address translation, another
    PID namespace, a /proc this process cannot read, or a driver that does not show its socket
    all answer False, which is safe: False only means statements are parsed each time, as
    behind a pooler.
    """
    transport = getattr(conn, "_transport", None)  # asyncpg keeps its socket's transport here
    if transport is None:
        return False
    local, remote = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
    if isinstance(local, tuple) and isinstance(remote, tuple):
        return await _same_tcp_connection(conn, local, remote)
    listener = _unix_peer_pid(transport.get_extra_info("socket"))
    if listener is None:
        return False
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    return isinstance(backend, int) and _parent_pid(backend) == listener


async def _same_tcp_connection(
    conn: asyncpg.Connection, local: tuple[Any, ...], remote: tuple[Any, ...]
) -> bool:
    row = await conn.fetchrow(_ENDS)
    if row is None or None in tuple(row):
        return False
    seen_here = (_address(local[0]), local[1], _address(remote[0]), remote[1])
    seen_there = (
        _address(row["client_host"]),
        row["client_port"],
        _address(row["server_host"]),
        row["server_port"],
    )
    return seen_here == seen_there


_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _unix_peer_pid(sock: Any) -> int | None:
    """The PID of the process listening at the other end of a Unix socket (Linux), or None."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    try:
        pid, _uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, peercred, _PEERCRED.size)
        )
    except (OSError, struct.error):
        return None
    return pid or None  # 0: the peer lives in a PID namespace this process cannot see


def _parent_pid(pid: int) -> int | None:
    """The parent of process ``pid`` as this process's /proc shows it, or None if unreadable."""
    try:
        with open(f"/proc/{int(pid)}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, IPv4-mapped IPv6 as IPv4, so both ends' spellings compare equal."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@asynccontextmanager
async def operator_pool(
    url: str, *, application_name: str, max_size: int = 4
) -> AsyncIterator[asyncpg.Pool]:
    """A small pool for a long-running operator process (the console), its schema checked.

    Pooler-safe (no cached statements): the console is often pointed at the same PgBouncer as
    everything else, and it runs few statements, so the parse each costs does not matter.
    """
    with translate_errors(url):
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=1,
            max_size=max_size,
            timeout=CONNECT_TIMEOUT_S,
            command_timeout=30,
            server_settings={"application_name": application_name},
            **POOLER_SAFE,
        )
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=5)
        except CLOSE_ERRORS:
            pool.terminate()


@asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection of ``pool``, typed as the Connection every operation takes.

    asyncpg hands out a proxy that forwards every Connection method; the cast says so once here.
    """
    async with pool.acquire() as proxy:
        yield cast(asyncpg.Connection, proxy)

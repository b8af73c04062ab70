"""Open asyncpg connections and check the outbox schema, translating driver errors to ours."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Final

import asyncpg

from outbox_worker.config import asyncpg_dsn, redact_url
from outbox_worker.errors import (
    ConfigError,
    DatabaseUnavailable,
    LoginRefused,
    SchemaNotReady,
    StatementRejected,
)
from outbox_worker.settings_parsing import hide_url_secrets

CONNECT_TIMEOUT_S = 10.0
# Behind a transaction-pooling PgBouncer each transaction may run on another server connection,
# so nothing may outlive a transaction: no named (cached) prepared statements. With the cache
# off asyncpg (>= 0.29) parses, binds and runs each statement in one Sync, which any pooler
# keeps on one server connection. Costs a parse per statement; buys "works behind PgBouncer
# with no setting". Nothing here relies on other session state either (SET, session advisory
# locks, temporary tables); LISTEN has its own connection (store/delivery.py).
POOLER_SAFE: Final[dict[str, Any]] = {"statement_cache_size": 0}
# Errors that mean "the database is not there right now", as opposed to a bug in our SQL.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


@contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn connection-level driver errors into DatabaseUnavailable."""
    try:
        yield
    except asyncpg.ClientConfigurationError as exc:  # e.g. ?sslmode=bogus: no retry will help
        problem = hide_url_secrets(str(exc), url)
        raise ConfigError(f"OUTBOX_DATABASE_URL {redact_url(url)}: {problem}") from exc
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


async def connect(url: str, *, application_name: str = "outbox-worker") -> asyncpg.Connection:
    """Open one connection to ``url``; DatabaseUnavailable when it cannot be reached."""
    with translate_errors(url):
        return await asyncpg.connect(
            asyncpg_dsn(url),
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": application_name},
            **POOLER_SAFE,
        )


@asynccontextmanager
async def connected(
    url: str, *, application_name: str = "outbox-worker"
) -> AsyncIterator[asyncpg.Connection]:
    """A connection for the duration of a block, closed afterwards even on cancellation."""
    conn = await connect(url, application_name=application_name)
    try:
        yield conn
    finally:
        await asyncio.shield(conn.close(timeout=5))


async def schema_revision(conn: asyncpg.Connection) -> str | None:
    """The alembic revision the outbox schema is at, or None when it was never migrated."""
    exists = await conn.fetchval("SELECT to_regclass('outbox.alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision: str | None = await conn.fetchval("SELECT version_num FROM outbox.alembic_version")
    return revision


async def ensure_schema_ready(conn: asyncpg.Connection, head: str) -> None:
    """Raise SchemaNotReady unless the outbox schema is at ``head``."""
    revision = await schema_revision(conn)
    if revision is None:
        raise SchemaNotReady("the outbox schema does not exist; run `outbox-worker migrate`")
    if revision != head:
        raise SchemaNotReady(
            f"the outbox schema is at revision {revision}, this version needs {head}; "
            "run `outbox-worker migrate`"
        )

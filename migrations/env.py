"""Alembic environment: one transaction, under an advisory lock, in the `outbox` schema.

Run by `outbox-worker migrate` (which hands in the URL) or by plain `alembic upgrade head` from a
checkout (alembic.ini at the repository's root; the URL then comes from OUTBOX_DATABASE_URL).

The lock makes `outbox-worker migrate` safe to run from several processes at once (deploys often
start every replica's migration job together): the second waits, then finds the schema at head.
"""

from __future__ import annotations

import asyncio
import logging.config
import uuid
from typing import Any

import asyncpg
from alembic import context
from alembic.util import CommandError
from sqlalchemy import Connection, pool, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.schema import CreateSchema

from outbox_worker.errors import ConfigError
from outbox_worker.migration_scripts import MIGRATION_LOCK_ID
from outbox_worker.schema import SCHEMA, VERSION_TABLE, include_name, metadata
from outbox_worker.settings.config import asyncpg_dsn
from outbox_worker.settings.environment import read_database_url

# Safe behind a transaction-pooling PgBouncer: the migration is one transaction (one server
# connection), and SQLAlchemy's asyncpg dialect prepares every statement under a name, so the
# names are unique (a name left on a pooled server connection can never clash with the next
# client's) and neither SQLAlchemy nor asyncpg caches statements across transactions. The
# advisory lock below is transaction-scoped for the same reason.
POOLER_SAFE_ADAPTER_ARGS: dict[str, Any] = {
    "prepared_statement_cache_size": 0,
    "prepared_statement_name_func": lambda: f"__outbox_{uuid.uuid4().hex}__",
}


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        include_schemas=True,
        include_name=include_name,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.execute(CreateSchema(SCHEMA, if_not_exists=True))
        context.run_migrations()
    # After the commit: what must not hold the migration's locks (a VALIDATE's scan of a big
    # table). Every revision's step runs on every migrate and finds nothing to do once done, so a
    # run interrupted between the commit and here is completed by the next.
    for script in reversed(list(context.script.walk_revisions())):
        after_commit = getattr(script.module, "after_commit", None)
        if after_commit is not None:
            after_commit(connection)


async def _run_async(url: str) -> None:
    # asyncpg parses the DSN itself, as the worker does: SQLAlchemy would pass query parameters
    # it does not know (sslpassword, ...) as keyword arguments that asyncpg.connect refuses. The
    # creator form (not async_creator) is how SQLAlchemy takes the adapter's statement settings.
    def creator() -> Any:
        return engine.sync_engine.dialect.dbapi.connect(  # type: ignore[union-attr]
            async_creator_fn=lambda: asyncpg.connect(asyncpg_dsn(url), statement_cache_size=0),
            **POOLER_SAFE_ADAPTER_ARGS,
        )

    engine = create_async_engine(
        "postgresql+asyncpg://",
        creator=creator,
        poolclass=pool.NullPool,
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    """Run the migrations on the configured URL (migrate.py's, else OUTBOX_DATABASE_URL)."""
    if context.config.config_file_name is not None:  # plain `alembic`: say what it runs
        logging.config.fileConfig(context.config.config_file_name, disable_existing_loggers=False)
    # alembic.ini holds no URL, so that no password sits in a file: plain `alembic` takes it from
    # OUTBOX_DATABASE_URL, checked as every command checks it.
    try:
        url = context.config.get_main_option("sqlalchemy.url") or read_database_url()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None  # alembic prints it as one line, no traceback
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run `outbox-worker migrate`")
main()

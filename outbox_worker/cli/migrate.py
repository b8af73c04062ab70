"""`outbox-worker migrate`: create or upgrade the outbox schema, and say which roles are missing."""

from __future__ import annotations

import click

from outbox_worker import migrate as migrations
from outbox_worker.cli import database_option
from outbox_worker.cli.run import run_async
from outbox_worker.settings.config import redact_url
from outbox_worker.settings.environment import read_database_url
from outbox_worker.store.connection import connected


@click.command("migrate")
@database_option
def migrate_command(database_url: str | None) -> None:
    """Create or upgrade the outbox schema to this version (safe to run twice or concurrently).

    \b
    Example:
      OUTBOX_DATABASE_URL=postgresql://app@db/app outbox-worker migrate
    """
    url = read_database_url(None, database_url)
    run_async(lambda: _check_reachable(url))
    migrations.upgrade(url)
    # SCHEMA_HEAD, held equal to the shipped history's head by a test: no second alembic load.
    click.echo(f"outbox schema is at revision {migrations.SCHEMA_HEAD} on {redact_url(url)}")
    missing = run_async(lambda: _missing_roles(url))
    if missing:
        click.echo(
            f"roles not created ({', '.join(missing)}): this login may not create roles. "
            "Run this SQL in this database as a superuser or a CREATEROLE login:\n"
        )
        click.echo(migrations.roles_sql())


async def _check_reachable(url: str) -> None:
    async with connected(url):
        pass


async def _missing_roles(url: str) -> list[str]:
    """The outbox group roles that do not exist on the server, in their order."""
    async with connected(url) as conn:
        rows = await conn.fetch(
            "SELECT name FROM unnest($1::text[]) WITH ORDINALITY AS r(name, position) "
            "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) ORDER BY position",
            list(migrations.ROLES),
        )
    return [r["name"] for r in rows]


def register(group: click.Group) -> None:
    """Add `migrate` to the CLI group."""
    group.add_command(migrate_command)

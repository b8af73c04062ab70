"""What the operator commands share: a checked connection, their options, and the bulk change.

Every command first checks that the schema is at head, so a forgotten `migrate` is one clear
line, exit 2. A command that changes many rows (requeue, purge) counts them first and hands the
rest to change_many: nothing on --dry-run, a confirmation unless --yes, then the change in
batches under a progress bar.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import click

from outbox_worker.cli import display as fmt
from outbox_worker.errors import ConfigError
from outbox_worker.migrate import SCHEMA_HEAD
from outbox_worker.settings.config import parse_duration
from outbox_worker.settings.environment import read_database_url
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor
from outbox_worker.store.connection import connected, ensure_schema_ready, translate_errors

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion."""
    return asyncio.run(coro)


@asynccontextmanager
async def ready_connection(database_url: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the configured database, its outbox schema checked to be one this version
    runs on (at its head, or newer and declaring it compatible)."""
    url = read_database_url(None, database_url)
    async with connected(url, application_name="outbox-worker operator") as conn:
        with translate_errors(url):
            # Quiet: an operator command's output is its answer (`check` shows a newer schema).
            await ensure_schema_ready(conn, SCHEMA_HEAD, announce=False)
            yield conn


def operator_actor() -> Actor:
    """Who runs this command, for the audit log: the OS user (None when the system has none)."""
    try:
        return Actor.cli(getpass.getuser())
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        return Actor.cli(None)


def duration_param(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """Click callback: parse a duration option, a usage error (exit 2) when it is not one."""
    if value is None:
        return None
    try:
        return parse_duration(value, name="value")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("value: ")) from None


def filter_options(default_limit: int | None) -> Callable[[F], F]:
    """--since, --status-code, --error-contains, --dedup-key and --limit (dead list, requeue)."""

    def decorate(func: F) -> F:
        options = [
            click.option(
                "--since",
                metavar="DURATION",
                callback=duration_param,
                help="Only messages dead within this long ago (30m, 24h, 7d).",
            ),
            click.option("--status-code", type=int, help="Only this last HTTP status (e.g. 400)."),
            click.option(
                "--error-contains", metavar="TEXT", help="Only errors containing TEXT (any case)."
            ),
            click.option("--dedup-key", metavar="KEY", help="Only the message with this key."),
            click.option(
                "--limit",
                type=click.IntRange(min=1),
                default=default_limit,
                show_default=default_limit is not None,
                help="Only the newest N matching messages.",
            ),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def make_filters(
    since: timedelta | None,
    status_code: int | None,
    error_contains: str | None,
    limit: int | None,
    dedup_key: str | None = None,
) -> ops.DeadFilters:
    """The filter options as one value."""
    return ops.DeadFilters(
        since=since,
        status_code=status_code,
        error_contains=error_contains,
        dedup_key=dedup_key,
        limit=limit,
    )


show_pii_option = click.option(
    "--show-pii", is_flag=True, help="Show emails, phones, names, IPs unmasked (handle with care)."
)


def bulk_options(*, done: str, would: str) -> Callable[[F], F]:
    """--dry-run, --yes and --batch-size of the commands that change many rows."""

    def add(func: F) -> F:
        func = click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=ops.DEFAULT_BATCH_SIZE,
            show_default=True,
            help=f"Rows {done} per transaction (short transactions keep the table responsive).",
        )(func)
        func = click.option(
            "--yes", "-y", is_flag=True, help="Do not ask before changing many rows."
        )(func)
        return click.option("--dry-run", is_flag=True, help=would)(func)

    return add


def confirm_many(count: int, action: str) -> None:
    """Ask before acting on more than one message; refuse (exit 2) when nobody can answer."""
    if count <= 1:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(
            f"this would {action} {count} messages; pass --yes to confirm "
            "(or --dry-run to see what would change)"
        )
    click.confirm(f"{action.capitalize()} {count} messages?", abort=True)


async def change_many(
    count: int,
    *,
    dry_run: bool,
    yes: bool,
    verb: str,
    doing: str,
    change: Callable[[ops.Progress], Awaitable[T]],
) -> T | None:
    """Change ``count`` counted rows: confirmed unless ``yes``, under a progress bar.

    None, and nothing changed, on a dry run or with nothing to change. ``verb`` names the change
    in the confirmation ("requeue"), ``doing`` beside the progress bar ("requeueing").
    """
    if dry_run or count == 0:
        return None
    if not yes:
        confirm_many(count, verb)
    with fmt.progress_bar(count, doing) as advance:
        return await change(advance)

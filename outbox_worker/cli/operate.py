"""Operator commands `dead list`, `dead show`, `stats`, `purge`, and the helpers they share.

Thin on purpose: the SQL is in store/operations.py, the display in cli/display.py. Every command
first checks that the schema is at head, so a forgotten `migrate` is one clear line, exit 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import click
from rich.live import Live

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.config import database_url_from_env, parse_duration
from outbox_worker.errors import ConfigError
from outbox_worker.migrate import head_revision
from outbox_worker.store import operations as ops
from outbox_worker.store.connection import connected, ensure_schema_ready, translate_errors

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_LIST_LIMIT = 50
DRY_RUN_SAMPLE = 20


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine to completion."""
    return asyncio.run(coro)


@asynccontextmanager
async def ready_connection(database_url: str | None) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the configured database, its outbox schema checked to be at head."""
    url = database_url_from_env(None, database_url)
    async with connected(url, application_name="outbox-worker operator") as conn:
        with translate_errors(url):
            await ensure_schema_ready(conn, head_revision())
            yield conn


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
    """--since, --status-code, --error-contains and --limit, shared by `dead list` and requeue."""

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
    since: timedelta | None, status_code: int | None, error_contains: str | None, limit: int | None
) -> ops.DeadFilters:
    """The filter options as one value."""
    return ops.DeadFilters(
        since=since, status_code=status_code, error_contains=error_contains, limit=limit
    )


show_pii_option = click.option(
    "--show-pii", is_flag=True, help="Show emails, phones, names, IPs unmasked (handle with care)."
)


@click.group(short_help="List and inspect dead letters.")
def dead() -> None:
    """Dead letters: messages Ravelin refused, or that ran out of retries.

    \b
    Examples:
      outbox-worker dead list --since 24h
      outbox-worker dead show 1234
    """


@dead.command("list")
@filter_options(DEFAULT_LIST_LIMIT)
@show_pii_option
@database_option
@json_option
def dead_list(
    since: timedelta | None,
    status_code: int | None,
    error_contains: str | None,
    limit: int,
    show_pii: bool,
    database_url: str | None,
    as_json: bool,
) -> None:
    """List dead letters, newest first.

    \b
    Example:
      outbox-worker dead list --since 24h --status-code 400
      outbox-worker dead list --error-contains timeout --json
    """
    filters = make_filters(since, status_code, error_contains, limit)

    async def fetch() -> tuple[list[ops.DeadLetter], int]:
        async with ready_connection(database_url) as conn:
            rows = await ops.list_dead(conn, filters)
            total = await ops.count_dead(conn, replace(filters, limit=None))
            return rows, total

    rows, total = run(fetch())
    now = datetime.now(UTC)
    if as_json:
        records = [fmt.dead_letter_record(r, now, show_pii) for r in rows]
        fmt.emit_json({"messages": records, "total_matching": total})
        return
    fmt.show_dead_list(rows, now, show_pii)
    if total > len(rows):
        click.echo(f"showing {len(rows)} of {total}; raise --limit to see more")


@dead.command("show")
@click.argument("message_id", metavar="ID", type=int)
@show_pii_option
@database_option
@json_option
def dead_show(message_id: int, show_pii: bool, database_url: str | None, as_json: bool) -> None:
    """Show one message: state, attempt history, body and dedup key.

    \b
    Example:
      outbox-worker dead show 1234
    """

    async def fetch() -> ops.MessageDetail:
        async with ready_connection(database_url) as conn:
            return await ops.get_message(conn, message_id)

    message = run(fetch())
    if as_json:
        fmt.emit_json(fmt.detail_record(message, show_pii))
    else:
        fmt.show_detail(message, show_pii)


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


@click.command()
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval", default="2s", show_default=True, callback=duration_param, help="--watch refresh."
)
@database_option
@json_option
def stats(watch: bool, interval: timedelta, database_url: str | None, as_json: bool) -> None:
    """Counts by state, backlog age, recent dead letters and deliveries.

    \b
    Examples:
      outbox-worker stats
      outbox-worker stats --watch --interval 5s
      outbox-worker stats --json
    """
    try:
        run(_stats(database_url, watch, interval.total_seconds(), as_json))
    except KeyboardInterrupt:
        return  # Ctrl-C is how --watch ends


async def _stats(database_url: str | None, watch: bool, interval_s: float, as_json: bool) -> None:
    async with ready_connection(database_url) as conn:
        current = await ops.stats(conn)
        if not watch:
            if as_json:
                fmt.emit_json(fmt.stats_record(current))
            else:
                fmt.show_stats(current)
            return
        if as_json or not fmt.on_terminal():
            while True:  # one JSON object per line, or one block per refresh
                if as_json:
                    click.echo(fmt.json_text(fmt.stats_record(current)))
                else:
                    fmt.show_stats(current)
                    click.echo("")
                await asyncio.sleep(interval_s)
                current = await ops.stats(conn)
        with Live(fmt.stats_renderable(current), console=fmt.console()) as live:
            while True:
                await asyncio.sleep(interval_s)
                live.update(fmt.stats_renderable(await ops.stats(conn)))


@click.command(short_help="Delete old acknowledged (and dead) rows.")
@click.option(
    "--older-than",
    metavar="DURATION",
    required=True,
    callback=duration_param,
    help="Delete rows finished longer ago than this (7d, 30d).",
)
@click.option("--include-dead", is_flag=True, help="Also delete dead letters that old.")
@bulk_options(done="deleted", would="Print what would be deleted; delete nothing.")
@database_option
@json_option
def purge(
    older_than: timedelta,
    include_dead: bool,
    dry_run: bool,
    yes: bool,
    batch_size: int,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Delete old acknowledged rows (and, with --include-dead, old dead letters).

    Works in batches (--batch-size), so it never holds locks for long.

    \b
    Examples:
      outbox-worker purge --older-than 7d --dry-run
      outbox-worker purge --older-than 30d --include-dead --yes
    """

    async def go() -> ops.PurgeCounts:
        async with ready_connection(database_url) as conn:
            counts = await ops.count_purgeable(conn, older_than, include_dead=include_dead)
            total = counts.acknowledged + counts.dead
            if dry_run or total == 0:
                return counts
            if not yes:
                confirm_many(total, "delete")
            with fmt.progress_bar(total, "deleting") as advance:
                return await ops.purge(
                    conn,
                    older_than,
                    include_dead=include_dead,
                    batch_size=batch_size,
                    on_progress=advance,
                )

    counts = run(go())
    if as_json:
        fmt.emit_json(
            {"dry_run": dry_run, "acknowledged": counts.acknowledged, "dead": counts.dead}
        )
        return
    verb = "would delete" if dry_run else "deleted"
    dead_part = f" and {counts.dead} dead" if include_dead else ""
    click.echo(f"{verb} {counts.acknowledged} acknowledged{dead_part} message(s)")


def register(group: click.Group) -> None:
    """Add the operator commands to ``group``."""
    for command in (dead, stats, purge):
        group.add_command(command)

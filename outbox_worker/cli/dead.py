"""`outbox-worker dead list` and `dead show`: the dead letters, and one message in full."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import (
    filter_options,
    make_filters,
    ready_connection,
    run,
    show_pii_option,
)
from outbox_worker.store import operations as ops

DEFAULT_LIST_LIMIT = 50


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
    dedup_key: str | None,
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
    filters = make_filters(since, status_code, error_contains, limit, dedup_key)

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


def register(group: click.Group) -> None:
    """Add `dead` to ``group``."""
    group.add_command(dead)

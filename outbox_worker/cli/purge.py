"""`outbox-worker purge`: delete old acknowledged rows (and, if asked, old dead letters)."""

from __future__ import annotations

from datetime import timedelta

import click

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import (
    bulk_options,
    change_many,
    duration_param,
    operator_actor,
    ready_connection,
    run,
)
from outbox_worker.store import operations as ops


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
            deleted = await change_many(
                counts.total,
                dry_run=dry_run,
                yes=yes,
                verb="delete",
                doing="deleting",
                change=lambda advance: ops.purge(
                    conn,
                    older_than,
                    actor=operator_actor(),
                    include_dead=include_dead,
                    batch_size=batch_size,
                    on_progress=advance,
                ),
            )
            return counts if deleted is None else deleted

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
    """Add `purge` to ``group``."""
    group.add_command(purge)

"""`outbox-worker audit`: what operators did (requeue, purge, pause, resume, console sign-ins)."""

from __future__ import annotations

from datetime import timedelta

import click

from outbox_worker.cli import database_option, fleet_display, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import duration_param, ready_connection, run
from outbox_worker.store.audit import AuditEntry, audit_log


@click.command(short_help="What operators did, and who.")
@click.option(
    "--since",
    metavar="DURATION",
    default="7d",
    show_default=True,
    callback=duration_param,
    help="Only actions within this long ago (1h, 7d, 400d).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="At most this many actions, newest first.",
)
@database_option
@json_option
def audit(since: timedelta, limit: int, database_url: str | None, as_json: bool) -> None:
    """What operators did: when, who (database login and OS or console user), what, how many.

    One line per action: a requeue or purge of many batches is one line with its total. The log
    is append-only; the fleet keeps it for OUTBOX_RETAIN_AUDIT (default 400 days).

    \b
    Examples:
      outbox-worker audit
      outbox-worker audit --since 30d --json
    """

    async def read() -> list[AuditEntry]:
        async with ready_connection(database_url) as conn:
            return await audit_log(conn, since=since, limit=limit)

    entries = run(read())
    if as_json:
        fmt.emit_json({"actions": [fleet_display.audit_record(e) for e in entries]})
        return
    fleet_display.show_audit(entries)


def register(group: click.Group) -> None:
    """Add `audit` to ``group``."""
    group.add_command(audit)

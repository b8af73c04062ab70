"""`outbox-worker pause`: stop delivery across the whole fleet until `resume`."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from outbox_worker.cli import database_option, fleet_display, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import operator_actor, ready_connection, run
from outbox_worker.store import fleet


@click.command(short_help="Pause delivery across the fleet.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown to everyone; audited).")
@database_option
@json_option
def pause(reason: str, database_url: str | None, as_json: bool) -> None:
    """Pause delivery across the whole fleet, workers started later included.

    Workers start no new send within a second (a worker without LISTEN, behind a transaction
    pooler: within its OUTBOX_POLL_INTERVAL); sends already in flight finish and are recorded as
    usual; no attempt is spent. Enqueue keeps working: messages wait, pending. Audited.

    \b
    Examples:
      outbox-worker pause --reason "Ravelin asked us to hold traffic (ticket 4711)"
      outbox-worker resume
    """

    async def change() -> fleet.PauseState:
        async with ready_connection(database_url) as conn:
            return await fleet.pause(conn, reason, operator_actor())

    state = run(change())
    if as_json:
        fmt.emit_json(fleet_display.pause_record(state))
        return
    fleet_display.print_line(fleet_display.pause_line(state, datetime.now(UTC)))
    click.echo("workers start no new send within 1 s; `outbox-worker resume` restarts delivery")


def register(group: click.Group) -> None:
    """Add `pause` to ``group``."""
    group.add_command(pause)

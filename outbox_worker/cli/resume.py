"""`outbox-worker resume`: restart delivery across the fleet after `pause`."""

from __future__ import annotations

import click

from outbox_worker.cli import database_option, fleet_display, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import operator_actor, ready_connection, run
from outbox_worker.store import fleet


@click.command(short_help="Resume delivery after a pause.")
@database_option
@json_option
def resume(database_url: str | None, as_json: bool) -> None:
    """Resume delivery across the fleet after `outbox-worker pause`; within a second. Audited.

    \b
    Example:
      outbox-worker resume
    """

    async def change() -> tuple[fleet.PauseState, fleet.PauseState]:
        async with ready_connection(database_url) as conn:
            before = await fleet.pause_state(conn)
            return before, await fleet.resume(conn, operator_actor())

    before, state = run(change())
    if as_json:
        fmt.emit_json(fleet_display.pause_record(state) | {"was_paused": before.paused})
        return
    if not before.paused:
        click.echo("delivery was not paused; nothing changed")
        return
    paused_for = ""
    if before.paused_at is not None and state.changed_at is not None:
        paused_for = f" after {fmt.age((state.changed_at - before.paused_at).total_seconds())}"
    click.echo(f"delivery resumed{paused_for}; workers start sending again within 1 s")


def register(group: click.Group) -> None:
    """Add `resume` to ``group``."""
    group.add_command(resume)

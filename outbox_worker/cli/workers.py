"""`outbox-worker workers`: every registered worker, its state and what it did lately."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from outbox_worker.cli import database_option, fleet_display, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import ready_connection, run
from outbox_worker.store import fleet


@click.command(short_help="List the running workers.")
@database_option
@json_option
def workers(database_url: str | None, as_json: bool) -> None:
    """List the workers: host, pid, version, state, sends in the last minute, in flight.

    Each worker refreshes its row every few seconds; one not seen for 30 s shows as gone (its row
    is deleted after an hour). The first line says whether delivery is paused fleet-wide.

    \b
    Examples:
      outbox-worker workers
      outbox-worker workers --json
    """

    async def read() -> tuple[list[fleet.WorkerInfo], fleet.PauseState]:
        async with ready_connection(database_url) as conn:
            return await fleet.list_workers(conn), await fleet.pause_state(conn)

    found, pause = run(read())
    if as_json:
        records = [fleet_display.worker_record(w) for w in found]
        fmt.emit_json({"pause": fleet_display.pause_record(pause), "workers": records})
        return
    fleet_display.show_workers(found, pause, datetime.now(UTC))


def register(group: click.Group) -> None:
    """Add `workers` to ``group``."""
    group.add_command(workers)

"""`outbox-worker stats`: counts by state, backlog age, recent dead letters and deliveries, the
workers by state and the fleet's pause."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import click
from rich.console import RenderableType
from rich.live import Live

from outbox_worker.cli import database_option, fleet_display, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import duration_param, ready_connection, run
from outbox_worker.models import Stats
from outbox_worker.store import fleet
from outbox_worker.store import operations as ops


@click.command()
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval", default="2s", show_default=True, callback=duration_param, help="--watch refresh."
)
@database_option
@json_option
def stats(watch: bool, interval: timedelta, database_url: str | None, as_json: bool) -> None:
    """Counts by state, backlog age, recent dead letters and deliveries; workers and the pause.

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
        current = await _Snapshot.take(conn)
        if not watch:
            if as_json:
                fmt.emit_json(current.record())
            else:
                current.show()
            return
        if as_json or not fmt.on_terminal():
            while True:  # one JSON object per line, or one block per refresh
                if as_json:
                    click.echo(fmt.json_text(current.record()))
                else:
                    current.show()
                    click.echo("")
                await asyncio.sleep(interval_s)
                current = await _Snapshot.take(conn)
        with Live(current.renderable(), console=fmt.console()) as live:
            while True:
                await asyncio.sleep(interval_s)
                live.update((await _Snapshot.take(conn)).renderable())


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One reading: the table's stats and the fleet's (workers by state, the pause)."""

    stats: Stats
    fleet: fleet.FleetSummary

    @classmethod
    async def take(cls, conn: asyncpg.Connection) -> _Snapshot:
        return cls(await ops.stats(conn), await fleet.fleet_summary(conn))

    def record(self) -> dict[str, Any]:
        return fmt.stats_record(self.stats) | fleet_display.fleet_record(self.fleet)

    def _fleet_lines(self) -> list[tuple[str, str]]:
        return fleet_display.fleet_lines(self.fleet, datetime.now(UTC))

    def show(self) -> None:
        fmt.show_stats(self.stats, self._fleet_lines())

    def renderable(self) -> RenderableType:
        return fmt.stats_renderable(self.stats, self._fleet_lines())


def register(group: click.Group) -> None:
    """Add `stats` to ``group``."""
    group.add_command(stats)

"""`outbox-worker stats`: counts by state, backlog age, recent dead letters and deliveries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import click
from rich.live import Live

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import duration_param, ready_connection, run
from outbox_worker.store import operations as ops


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


def register(group: click.Group) -> None:
    """Add `stats` to ``group``."""
    group.add_command(stats)

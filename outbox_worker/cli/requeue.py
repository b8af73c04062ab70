"""`outbox-worker requeue`: send dead letters again (dead -> pending), by id, all, or filters."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli import display as fmt
from outbox_worker.cli.operator_kit import (
    bulk_options,
    change_many,
    filter_options,
    make_filters,
    operator_actor,
    ready_connection,
    run,
)
from outbox_worker.models import State
from outbox_worker.store import operations as ops

DRY_RUN_SAMPLE = 20


@click.command(short_help="Send dead letters again.")
@click.option("--id", "ids", type=int, multiple=True, metavar="ID", help="A message (repeatable).")
@click.option("--all", "all_dead", is_flag=True, help="Every dead letter.")
@filter_options(None)
@bulk_options(done="moved", would="Print what would move; change nothing.")
@database_option
@json_option
def requeue(
    ids: tuple[int, ...],
    all_dead: bool,
    since: timedelta | None,
    status_code: int | None,
    error_contains: str | None,
    dedup_key: str | None,
    limit: int | None,
    dry_run: bool,
    yes: bool,
    batch_size: int,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Send dead letters again (dead -> pending, attempts reset, history kept).

    Name the messages with --id (repeatable), --all, or the filters of `dead list`.
    More than one message needs --yes, or a yes at the prompt on a terminal.

    \b
    Examples:
      outbox-worker requeue --id 1234
      outbox-worker requeue --status-code 503 --since 24h --dry-run
      outbox-worker requeue --all --yes
    """
    filters = make_filters(since, status_code, error_contains, limit, dedup_key)
    has_filters = any(v is not None for v in asdict(filters).values())
    if sum([bool(ids), all_dead, has_filters]) != 1:
        raise click.UsageError("name the messages with one of --id, --all, or filters")
    if ids:
        result = run(_by_ids(database_url, list(ids), dry_run, yes, batch_size))
    else:
        result = run(_by_filters(database_url, filters, dry_run, yes, batch_size))
    _report(result, dry_run, as_json)


async def _by_ids(
    database_url: str | None, ids: list[int], dry_run: bool, yes: bool, batch_size: int
) -> dict[str, Any]:
    async with ready_connection(database_url) as conn:
        states = await ops.message_states(conn, ids)  # MessageNotFound: exit 1, nothing changed
        not_dead = [{"id": i, "state": str(s)} for i, s in states.items() if s is not State.DEAD]
        dead = sorted(i for i, s in states.items() if s is State.DEAD)
        result = await change_many(
            len(dead),
            dry_run=dry_run,
            yes=yes,
            verb="requeue",
            doing="requeueing",
            change=lambda advance: ops.requeue_ids(
                conn, dead, actor=operator_actor(), batch_size=batch_size, on_progress=advance
            ),
        )
        if result is None:
            return {"count": len(dead), "ids": dead, "not_dead": not_dead}
        not_dead += [{"id": i, "state": str(s)} for i, s in result.not_dead.items()]
        return {"count": result.requeued, "ids": dead, "not_dead": not_dead}


async def _by_filters(
    database_url: str | None, filters: ops.DeadFilters, dry_run: bool, yes: bool, batch_size: int
) -> dict[str, Any]:
    async with ready_connection(database_url) as conn:
        count = await ops.count_dead(conn, filters)
        moved = await change_many(
            count,
            dry_run=dry_run,
            yes=yes,
            verb="requeue",
            doing="requeueing",
            change=lambda advance: ops.requeue_dead(
                conn, filters, actor=operator_actor(), batch_size=batch_size, on_progress=advance
            ),
        )
        if dry_run:
            sample = await ops.list_dead(conn, filters, limit=DRY_RUN_SAMPLE)
            now = datetime.now(UTC)
            rows = [fmt.dead_letter_record(r, now, show_pii=False) for r in sample]
            return {"count": count, "sample": rows, "not_dead": []}
        return {"count": 0 if moved is None else moved, "not_dead": []}


def _report(result: dict[str, Any], dry_run: bool, as_json: bool) -> None:
    """Print the outcome: the count, and every named message that was not dead."""
    if as_json:
        key = "would_requeue" if dry_run else "requeued"
        data = {"dry_run": dry_run, key: result["count"], "not_dead": result["not_dead"]}
        if "ids" in result:
            data["ids"] = result["ids"]
        if "sample" in result:
            data["sample_ids"] = [r["id"] for r in result["sample"]]
        fmt.emit_json(data)
        return
    for item in result["not_dead"]:
        click.echo(f"message {item['id']} is {item['state']}, not dead: left unchanged")
    if dry_run:
        click.echo(f"would requeue {result['count']} message(s); nothing was changed")
        if result.get("ids"):
            click.echo("ids: " + " ".join(str(i) for i in result["ids"]))
        if result.get("sample"):
            rows = [
                [str(r["id"]), fmt.age(r["age_s"]), str(r["last_status"]), r["reason"]]
                for r in result["sample"]
            ]
            fmt.show_table(["id", "age", "status", "reason"], rows, title="first to move")
        return
    click.echo(f"requeued {result['count']} message(s)")


def register(group: click.Group) -> None:
    """Add `requeue` to ``group``."""
    group.add_command(requeue)

"""`outbox-worker demo`: the whole flow on this machine with one command and no account.

A throwaway PostgreSQL (embedded, or a database of its own on a server you name), the stand-in
for Ravelin's endpoint, a realistic mix of registration updates enqueued as signups arrive, and
the real worker delivering them through an outage, rejections and retries. It ends by itself
once every message is acknowledged or dead, prints what the table says, and cleans up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from outbox_worker.cli import database_option, json_option
from outbox_worker.cli.run import run_async
from outbox_worker.demo.display import Report, print_report
from outbox_worker.demo.kept_console import start_kept_console, stop_kept_console
from outbox_worker.demo.session import DemoOptions, run_demo
from outbox_worker.embedded import (
    embedded_postgres_server,
    kept_postgres_server,
    stop_kept_server,
)
from outbox_worker.observability import configure_logging
from outbox_worker.settings.config import check_database_url, parse_duration
from outbox_worker.settings.environment import read_text


@click.command("demo")
@click.option(
    "--count",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Registration updates to enqueue.",
)
@click.option(
    "--rate",
    default=500.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Signups enqueued per second (0: all at once).",
)
@click.option(
    "--timeout",
    "timeout",
    default="60s",
    show_default=True,
    metavar="DURATION",
    help="Give up (exit 1) if not every message is settled by then.",
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the mix.")
@database_option
@click.option(
    "--keep",
    "--keep-database",
    "keep_database",
    is_flag=True,
    help="Keep the demo's rows to try operator commands: the embedded PostgreSQL keeps "
    "running (or, with a database URL, the demo's database stays).",
)
@click.option(
    "--stop",
    "stop_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Stop an embedded PostgreSQL that `demo --keep` left running, delete its data, exit.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the worker logs (default: a file in the temp directory).",
)
@json_option
def demo_command(
    count: int,
    rate: float,
    timeout: str,
    seed: int,
    database_url: str | None,
    keep_database: bool,
    stop_dir: Path | None,
    log_file: Path | None,
    as_json: bool,
) -> None:
    """See the whole flow locally: enqueue, deliver, retry, dead-letter; no setup, no account.

    Starts a throwaway PostgreSQL (embedded, unless --database-url or OUTBOX_DATABASE_URL names
    a server: then it works in a database of its own, outbox_demo_<random>, and drops it after),
    starts a stand-in for Ravelin's endpoint, enqueues a mix of registration outcomes, runs the
    worker until each message is acknowledged or dead-lettered, and prints a summary read from
    outbox.messages. Ctrl-C stops everything it started.

    \b
    Examples:
      outbox-worker demo
      outbox-worker demo --count 2000 --json
      outbox-worker demo --keep          (then try the commands it prints)
      outbox-worker demo --stop /tmp/outbox-demo-abc123
      outbox-worker demo --database-url postgresql://me@localhost/postgres --keep-database
    """
    if stop_dir is not None:
        stop_kept_console(stop_dir)
        stop_kept_server(stop_dir)
        click.echo(f"stopped the demo's PostgreSQL and deleted {stop_dir}", err=True)
        return
    server_url = database_url or read_text("database_url")
    if server_url is not None:
        check_database_url(server_url)
    timeout_s = parse_duration(timeout, name="--timeout").total_seconds()
    options = DemoOptions(count, rate, timeout_s, seed, server_url, keep_database)
    log_path = log_file or Path(tempfile.gettempdir()) / f"outbox-worker-demo-{os.getpid()}.log"
    try:
        report = _run_with_logs(options, log_path)
    except KeyboardInterrupt:  # before or after the event loop ran: cleanup already happened
        report = None
    if report is not None and report.outcome == "interrupted" and report.kept_server_dir:
        stop_kept_server(report.kept_server_dir)  # --keep is for a finished demo's rows
    if report is None or report.outcome == "interrupted":
        kept = " (the database is kept)" if keep_database and server_url else ""
        click.echo(
            f"demo interrupted; stopped the worker, the stand-in and PostgreSQL{kept}", err=True
        )
        raise SystemExit(128 + signal.SIGINT)
    print_report(report, as_json=as_json)
    if report.kept_server_dir is not None and report.kept_database_url is not None:
        _announce_console(report.kept_database_url, report.kept_server_dir, as_json)
    if report.outcome != "finished":
        click.echo(
            f"outbox-worker: the demo did not finish within {timeout}: "
            f"{report.tally.acknowledged + report.tally.dead} of {count} messages settled",
            err=True,
        )
        raise SystemExit(1)


def _announce_console(database_url: str, folder: Path, as_json: bool) -> None:
    """Start the console on the kept database; print its address and token (stderr with --json)."""
    console = start_kept_console(database_url, folder)
    lines = (
        [
            f"The web console runs on the kept database: {console.url}",
            f"  sign in with the token {console.token}",
            f"  (its log: {folder / 'console.log'}; --stop stops it with PostgreSQL)",
        ]
        if console is not None
        else [f"The web console did not start; see {folder / 'console.log'}"]
    )
    for line in lines:
        click.echo(line, err=as_json)


def _run_with_logs(options: DemoOptions, log_path: Path) -> Report:
    with log_path.open("a", encoding="utf-8") as log_stream:
        configure_logging(level="info", json=True, stream=log_stream)
        with _server(options.server_url, keep=options.keep_database) as (admin_url, kept_dir):
            return run_async(lambda: run_demo(options, admin_url, log_path, kept_dir))


@contextlib.contextmanager
def _server(server_url: str | None, *, keep: bool) -> Iterator[tuple[str, Path | None]]:
    """The admin URL, and the directory of an embedded server kept running (else None)."""
    if server_url is not None:
        yield server_url, None
        return
    click.echo("starting an embedded PostgreSQL ...", err=True)
    if keep:
        with kept_postgres_server() as (url, kept_dir):
            yield url, kept_dir
        return
    with embedded_postgres_server() as url:
        yield url, None


def register(group: click.Group) -> None:
    """Add the demo command to the CLI group."""
    group.add_command(demo_command)

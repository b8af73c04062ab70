"""`outbox-worker demo`: the whole flow on this machine with one command and no account.

A throwaway PostgreSQL (embedded, or a database of its own on a server you name), the stand-in
for Ravelin's endpoint, a realistic mix of registration updates enqueued as signups arrive, and
the real worker delivering them through an outage, rejections and retries. It ends by itself
once every message is acknowledged or dead, prints what the table says, and cleans up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from outbox_worker import migrate as migrations
from outbox_worker.cli import database_option, json_option
from outbox_worker.cli.run import run_async
from outbox_worker.config import (
    CircuitSettings,
    RetrySettings,
    Secret,
    Settings,
    check_database_url,
    env_value,
    parse_duration,
)
from outbox_worker.demo import queries as tallies
from outbox_worker.demo.display import Report, live_progress, print_report
from outbox_worker.demo.scenario import Scenario, build_scenario, unreachable_script
from outbox_worker.embedded import (
    embedded_postgres_server,
    kept_postgres_server,
    stop_kept_server,
)
from outbox_worker.enqueue import enqueue_async
from outbox_worker.errors import OutboxError
from outbox_worker.observability import configure_logging
from outbox_worker.sender import HttpSender, http_session
from outbox_worker.standin import StandIn
from outbox_worker.store.connection import connected
from outbox_worker.store.delivery import PostgresStore
from outbox_worker.worker import Worker

if TYPE_CHECKING:
    import asyncpg

DEMO_API_KEY = "sk_test_demo"
ENQUEUE_BATCH = 25  # updates per enqueuing transaction, like a burst of signups
WATCH_INTERVAL_S = 0.1
MS = timedelta(milliseconds=1)
# Short timings so the demo takes seconds; the lease still outlives the HTTP timeout + 5 s.
DEMO_RETRY = RetrySettings(backoff_base=200 * MS, backoff_cap=1000 * MS, max_attempts=5)
DEMO_CIRCUIT = CircuitSettings(probe_initial=200 * MS, probe_cap=1000 * MS)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What the user asked for, checked."""

    count: int
    rate: float  # signups enqueued per second; 0: all at once
    timeout_s: float
    seed: int
    server_url: str | None  # None: an embedded PostgreSQL
    keep_database: bool


def demo_settings(database_url: str, endpoint_url: str) -> Settings:
    """Worker settings for the demo: the stand-in's URL and key, timings in milliseconds."""
    return Settings(
        database_url=database_url,
        api_key=Secret(DEMO_API_KEY),
        endpoint_url=endpoint_url,
        concurrency=16,
        batch_size=50,
        http_timeout=timedelta(seconds=2),
        lease=timedelta(seconds=8),
        poll_interval=200 * MS,
        shutdown_grace=timedelta(seconds=2),
        retry=DEMO_RETRY,
        circuit=DEMO_CIRCUIT,
    )


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
        stop_kept_server(stop_dir)
        click.echo(f"stopped the demo's PostgreSQL and deleted {stop_dir}", err=True)
        return
    server_url = database_url or env_value("database_url")
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
    if report.outcome != "finished":
        click.echo(
            f"outbox-worker: the demo did not finish within {timeout}: "
            f"{report.tally.acknowledged + report.tally.dead} of {count} messages settled",
            err=True,
        )
        raise SystemExit(1)


def _run_with_logs(options: DemoOptions, log_path: Path) -> Report:
    with log_path.open("a", encoding="utf-8") as log_stream:
        configure_logging(level="info", json=True, stream=log_stream)
        with _server(options.server_url, keep=options.keep_database) as (admin_url, kept_dir):
            result: list[Report] = []

            async def main() -> None:
                result.append(await run_demo(options, admin_url, log_path, kept_dir))

            run_async(main)
            return result[0]


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


async def run_demo(
    options: DemoOptions, admin_url: str, log_path: Path, kept_dir: Path | None = None
) -> Report:
    """Migrate a throwaway database, start the stand-in, deliver the scenario, read the table."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    now_ms = time.time_ns() // 1_000_000
    scenario = build_scenario(options.count, seed=options.seed, now_ms=now_ms)
    async with _throwaway_database(admin_url, keep=options.keep_database) as url:
        await asyncio.to_thread(migrations.upgrade, url)
        async with StandIn(DEMO_API_KEY) as standin:
            _script(standin, scenario, DEMO_RETRY.max_attempts)
            settings = demo_settings(url, standin.url)
            click.echo(f"stand-in for Ravelin on {standin.url}; worker log in {log_path}", err=True)
            started = time.monotonic()
            outcome = "interrupted"
            if not interrupted.is_set():
                outcome = await _deliver(settings, scenario, options, interrupted)
            elapsed = time.monotonic() - started
            async with connected(url, application_name="outbox-worker-demo") as conn:
                tally = await tallies.tally(conn)
                reasons = await tallies.dead_reasons(conn)
                latency = await tallies.latency(conn)
                first_dead = await tallies.first_dead_id(conn)
            return Report(
                outcome=outcome,
                scenario=scenario,
                tally=tally,
                dead_reasons=reasons,
                latency=latency,
                elapsed_s=elapsed,
                standin_statuses=standin.counts(),
                server_url=options.server_url,
                kept_database_url=url if options.keep_database else None,
                kept_server_dir=kept_dir,
                first_dead_id=first_dead,
                log_file=log_path,
            )


@contextlib.asynccontextmanager
async def _throwaway_database(admin_url: str, *, keep: bool) -> AsyncIterator[str]:
    name = f"outbox_demo_{secrets.token_hex(4)}"
    async with connected(admin_url, application_name="outbox-worker-demo") as admin:
        await tallies.create_database(admin, name)
        try:
            yield urlsplit(admin_url)._replace(path=f"/{name}").geturl()
        finally:
            if not keep:
                await asyncio.shield(tallies.drop_database(admin, name))


def _script(standin: StandIn, scenario: Scenario, max_attempts: int) -> None:
    for key in scenario.rejected:
        standin.script_for(key, [400])
    for key in scenario.unreachable:
        standin.script_for(key, unreachable_script(max_attempts))
    standin.set_script(scenario.outage)


async def _deliver(
    settings: Settings, scenario: Scenario, options: DemoOptions, interrupted: asyncio.Event
) -> str:
    """Run the worker while the updates are enqueued; stop it once every row is settled."""
    store = PostgresStore(settings.database_url, history_cap=settings.history_cap)
    await store.open()
    stop = asyncio.Event()
    timeout_s = settings.http_timeout.total_seconds()
    try:
        async with (
            http_session(concurrency=settings.concurrency, timeout_s=timeout_s) as session,
            connected(settings.database_url, application_name="outbox-worker-demo") as monitor,
        ):
            worker = Worker(
                settings, store, HttpSender(session, settings.endpoint_url, settings.api_key)
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(worker.run(stop), name="worker")
                feed = tasks.create_task(
                    _enqueue(settings.database_url, scenario, options.rate), name="enqueue"
                )
                try:
                    return await _watch(monitor, feed, options, interrupted)
                finally:
                    feed.cancel()
                    stop.set()
    except* OutboxError as group:
        raise group.exceptions[0] from None
    finally:
        await store.close()


async def _enqueue(url: str, scenario: Scenario, rate: float) -> None:
    """Enqueue the updates as the application would: a few per transaction, at ``rate``/s."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with connected(url, application_name="outbox-worker-demo") as conn:
        for first in range(0, len(scenario.updates), ENQUEUE_BATCH):
            batch = scenario.updates[first : first + ENQUEUE_BATCH]
            async with conn.transaction():
                for key, update in batch:
                    await enqueue_async(conn, update, dedup_key=f"demo:{key}")
            if rate > 0:
                due = started + (first + len(batch)) / rate
                await asyncio.sleep(max(0.0, due - loop.time()))


async def _watch(
    monitor: asyncpg.Connection,
    feed: asyncio.Task[None],
    options: DemoOptions,
    interrupted: asyncio.Event,
) -> str:
    """Show progress from the table until every row is settled, time is up, or Ctrl-C."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout_s
    with live_progress(options.count) as show:
        while True:
            tally = await tallies.tally(monitor)
            show(tally)
            if feed.done() and tally.total == options.count and tally.pending == 0:
                return "finished"
            if loop.time() >= deadline:
                return "timed_out"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(WATCH_INTERVAL_S):
                    await interrupted.wait()
                    return "interrupted"


def register(group: click.Group) -> None:
    """Add the demo command to the CLI group."""
    group.add_command(demo_command)

"""One demo run: a throwaway database, the stand-in, the scenario enqueued while the worker
delivers it, and the table read back once every message is settled (or time is up)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click

from outbox_worker import migrate as migrations
from outbox_worker.assemble import opened_worker
from outbox_worker.demo import queries as tallies
from outbox_worker.demo.display import Report, live_progress
from outbox_worker.demo.pause import Pause, outage_pause
from outbox_worker.demo.scenario import Scenario, build_scenario, unreachable_script
from outbox_worker.enqueue import enqueue_async
from outbox_worker.errors import OutboxError
from outbox_worker.settings.config import CircuitSettings, RetrySettings, Secret, Settings
from outbox_worker.settings.urls import with_database
from outbox_worker.standin import StandIn
from outbox_worker.store.connection import connected

if TYPE_CHECKING:
    import asyncpg

DEMO_API_KEY = "sk_test_demo"
ENQUEUE_BATCH = 25  # updates per enqueuing transaction, like a burst of signups
WATCH_INTERVAL_S = 0.1
MS = timedelta(milliseconds=1)
# Short timings so the demo takes seconds; the lease still outlives the HTTP timeout + 5 s. The
# scripted outage's probes come after 100, 200 and 400 ms: the pause is visible, not long.
DEMO_RETRY = RetrySettings(backoff_base=100 * MS, backoff_cap=500 * MS, max_attempts=5)
DEMO_CIRCUIT = CircuitSettings(probe_initial=100 * MS, probe_cap=400 * MS)


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


async def run_demo(
    options: DemoOptions, admin_url: str, log_path: Path, kept_dir: Path | None
) -> Report:
    """Migrate a throwaway database, start the stand-in, deliver the scenario, read the table."""
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    now_ms = time.time_ns() // 1_000_000
    scenario = build_scenario(
        options.count,
        seed=options.seed,
        now_ms=now_ms,
        outage_threshold=DEMO_CIRCUIT.outage_threshold,
    )
    async with _throwaway_database(admin_url, keep=options.keep_database) as url:
        await asyncio.to_thread(migrations.upgrade, url)
        async with StandIn(DEMO_API_KEY) as standin:
            _script(standin, scenario, DEMO_RETRY.max_attempts)
            settings = demo_settings(url, standin.url)
            click.echo(f"stand-in for Ravelin on {standin.url}; worker log in {log_path}", err=True)
            log_start = _log_size(log_path)
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
                pause=_outage_pause(log_path, log_start),
            )


def _log_size(log_path: Path) -> int:
    """Where this run's log lines start: the log file may hold earlier runs' (--log-file)."""
    try:
        return log_path.stat().st_size
    except OSError:
        return 0


def _outage_pause(log_path: Path, start: int) -> Pause | None:
    """The scripted outage's pause, from what the worker logged during this run."""
    try:
        with log_path.open(encoding="utf-8", errors="replace") as log:
            log.seek(start)
            return outage_pause(log)
    except OSError:  # the log is for reading afterwards; a summary without the pause still tells
        return None


@contextlib.asynccontextmanager
async def _throwaway_database(admin_url: str, *, keep: bool) -> AsyncIterator[str]:
    name = f"outbox_demo_{secrets.token_hex(4)}"
    async with connected(admin_url, application_name="outbox-worker-demo") as admin:
        await tallies.create_database(admin, name)
        try:
            yield with_database(admin_url, name)
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
    stop = asyncio.Event()
    try:
        async with (
            opened_worker(settings) as worker,
            connected(settings.database_url, application_name="outbox-worker-demo") as monitor,
            asyncio.TaskGroup() as tasks,
        ):
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

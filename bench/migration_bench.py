"""Upgrade under load: how long each revision takes, and how long it makes the fleet wait.

    python -m bench.migration_bench [--rows 1000000] [--rate 200] [--settle 2] [--database-url URL]
    python -m bench.migration_bench --tiny        (what CI runs)

(1) From an empty database to head: the time `outbox-worker migrate` takes on a new install.

(2) Each revision from 0004 on, applied one at a time to a table of ``--rows`` rows (loaded at
revision 0003: acknowledged rows as retention keeps them, one attempt each) while a worker
delivers to the stand-in and producers enqueue at ``--rate`` updates/s, one per transaction
(the Python enqueue). A row per revision (and one with no migration, the baseline): the
migration's time; the longest enqueue, timed by the producer; and the longest lock wait of the
producers, the worker and the migration itself, sampled every 10 ms from pg_stat_activity
(``now() - query_start`` of a backend whose wait_event_type is Lock: an upper bound of the wait,
to within the sample interval). Target: no producer or worker waits on a lock for 1 s or more.

The worker is the last release's (tests/released.py: built from git history), as a fleet that is
upgrading runs it, in a process of its own, built as `outbox-worker run` builds it but without
the start-up check that the schema is exactly its head: its statements touch only what revision
0001 created, so it delivers at every revision from 0003 on. (This version's worker reads columns
of the newest revisions, so it could not claim before they exist.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.harness import (
    API_KEY,
    add_database_option,
    load,
    print_table,
    python_command,
    run_async,
    sample_updates,
    server,
    standin_process,
    stop_process,
    tail,
)
from outbox_worker import enqueue_async, migrate
from tests.pg import admin_execute, unique_name, with_database
from tests.released import (
    RELEASED_COMMIT,
    RELEASED_SCHEMA_HEAD,
    SERVE_RELEASED_WORKER,
    ReleaseUnavailable,
    extract_release,
)

FIRST_MEASURED = "0004"  # the revisions before it ran before any fleet existed
BEFORE_FIRST = "0003"
SAMPLE_EVERY_S = 0.01
PRODUCERS = 4
TARGET_S = 1.0
_LOAD_CHUNK = 100_000
_PRODUCER_APP, _WORKER_APP, _MIGRATION_APP = "bench-producer", "outbox-worker", "bench-migrate"

# Acknowledged rows as retention keeps them: a realistic payload's size, one history entry.
LOAD_ROWS = """
INSERT INTO outbox.messages (payload, state, attempts, acknowledged_at, last_status, history,
                             created_at)
SELECT jsonb_build_object(
           'timestamp', 1700000000000 + g,
           'registration', jsonb_build_object(
               'success', true, 'username', 'user' || g || '@example.com',
               'timestamp', 1700000000000 + g,
               'app', jsonb_build_object('name', 'Shop', 'platform', 'web')),
           'customer', jsonb_build_object(
               'customerId', 'c-' || g, 'email', 'user' || g || '@example.com',
               'name', 'Ada Lovelace', 'telephone', '+447700900' || lpad((g % 1000)::text, 3, '0')),
           'device', jsonb_build_object(
               'deviceId', md5(g::text), 'type', 'phone', 'os', 'ios',
               'ipAddress', '192.0.2.' || (g % 254 + 1))),
       'acknowledged', 1, now() - make_interval(secs => g % 86400), 200,
       jsonb_build_array(jsonb_build_object('at', now(), 'status', 200, 'error', NULL,
                                            'latency_ms', 41.5)),
       now() - make_interval(secs => g % 86400)
FROM generate_series($1::int, $2::int) AS g
"""

# Backends of this database waiting on a heavyweight lock, and for how long their statement ran.
LOCK_WAITS = """
SELECT application_name, extract(epoch FROM clock_timestamp() - query_start)::float8 AS waited,
       wait_event
FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


# What the producers enqueued during the run, and how much of it was delivered.
_DELIVERED = """
SELECT count(*) AS enqueued, count(*) FILTER (WHERE state = 'acknowledged') AS delivered
FROM outbox.messages WHERE created_at >= to_timestamp($1::float8)
"""


@dataclass(slots=True)
class Window:
    """What happened while one revision was applied (or during the baseline)."""

    name: str
    migration_s: float | None = None
    enqueues: int = 0
    longest_enqueue_s: float = 0.0
    # Per application: the longest wait and its kind (relation, extend, transactionid, ...).
    longest_wait: dict[str, tuple[float, str]] = field(
        default_factory=lambda: defaultdict(lambda: (0.0, ""))
    )

    def row(self) -> list[object]:
        """The table row: revision, seconds, enqueues, longest enqueue and waits in ms, result."""
        waits = self.longest_wait
        worst = max(self.longest_enqueue_s, waits[_PRODUCER_APP][0], waits[_WORKER_APP][0])
        return [
            self.name,
            "-" if self.migration_s is None else f"{self.migration_s:.2f}",
            self.enqueues,
            _ms(self.longest_enqueue_s),
            _wait(waits[_PRODUCER_APP]),
            _wait(waits[_WORKER_APP]),
            _wait(waits[_MIGRATION_APP]),
            "ok" if worst < TARGET_S else f"MISSED (>= {TARGET_S:.0f} s)",
        ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def _wait(wait: tuple[float, str]) -> str:
    seconds, kind = wait
    return f"{_ms(seconds)} ({kind})" if kind else _ms(seconds)


class Load:
    """Producers at a steady rate and a lock-wait sampler, reporting into the current Window."""

    def __init__(self, url: str, rate: float) -> None:
        self._url, self._rate = url, rate
        self.window = Window("warm-up")
        self._stop = asyncio.Event()
        self._updates = sample_updates(64)

    async def run(self) -> None:
        """Produce and sample until stop()."""
        async with asyncio.TaskGroup() as tasks:
            for i in range(PRODUCERS):
                tasks.create_task(self._produce(i), name=f"producer-{i}")
            tasks.create_task(self._sample(), name="sampler")

    def stop(self) -> None:
        """End the producers and the sampler."""
        self._stop.set()

    async def _produce(self, index: int) -> None:
        conn = await asyncpg.connect(self._url, server_settings={"application_name": _PRODUCER_APP})
        try:
            interval, n = PRODUCERS / self._rate, index
            loop = asyncio.get_running_loop()
            due = loop.time() + index / self._rate
            while not self._stop.is_set():
                await asyncio.sleep(max(0.0, due - loop.time()))
                started = time.perf_counter()
                # One statement each (no BEGIN, COMMIT): what a migration's locks cost it.
                await enqueue_async(
                    conn, self._updates[n % len(self._updates)], allow_autocommit=True
                )
                took = time.perf_counter() - started
                window = self.window
                window.enqueues += 1
                window.longest_enqueue_s = max(window.longest_enqueue_s, took)
                n, due = n + PRODUCERS, due + interval
        finally:
            await conn.close()

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self._url)
        try:
            while not self._stop.is_set():
                waits = self.window.longest_wait
                for app, waited, kind in await conn.fetch(LOCK_WAITS):
                    key = _WORKER_APP if app.startswith(_WORKER_APP) else app
                    waits[key] = max(waits[key], (waited, kind))
                await asyncio.sleep(SAMPLE_EVERY_S)
        finally:
            await conn.close()


async def measure(url: str, rows: int, rate: float, settle_s: float) -> list[Window]:
    """Load ``rows`` at revision 0003, then apply each later revision under load."""
    await asyncio.to_thread(migrate.upgrade, url, BEFORE_FIRST)
    await load_rows(url, rows)
    windows: list[Window] = []
    started_at = time.time()
    with standin_process() as standin, worker_process(url, standin.url):
        load_ = Load(url, rate)
        producing = asyncio.create_task(load_.run(), name="load")
        try:
            await asyncio.sleep(settle_s)  # warm-up: the worker has started and drains
            load_.window = baseline = Window("none (baseline)")
            await asyncio.sleep(2 * settle_s)
            windows.append(baseline)
            migration_url = _with_application_name(url, _MIGRATION_APP)
            for revision in revisions_from(FIRST_MEASURED):
                load_.window = window = Window(revision)
                await asyncio.sleep(settle_s)
                started = time.perf_counter()
                await asyncio.to_thread(migrate.upgrade, migration_url, revision)
                window.migration_s = time.perf_counter() - started
                await asyncio.sleep(settle_s)
                windows.append(window)
                print(f"  {revision}: {window.migration_s:.2f}s; {load()}", flush=True)
        finally:
            load_.stop()
            await producing
        await _report_delivery(url, started_at)
    return windows


async def _report_delivery(url: str, since: float) -> None:
    """Say how much of what the producers enqueued the worker delivered meanwhile."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(_DELIVERED, since)
    finally:
        await conn.close()
    assert row is not None
    print(
        f"the worker delivered {row['delivered']:,} of {row['enqueued']:,} updates enqueued "
        "during the run",
        flush=True,
    )


async def load_rows(url: str, rows: int) -> None:
    """Insert ``rows`` acknowledged rows in chunks, then VACUUM ANALYZE (as autovacuum would)."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url)
    try:
        for first in range(1, rows + 1, _LOAD_CHUNK):
            await conn.execute(LOAD_ROWS, first, min(rows, first + _LOAD_CHUNK - 1))
        await conn.execute("VACUUM ANALYZE outbox.messages")
        size = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('outbox.messages'))"
        )
    finally:
        await conn.close()
    print(f"loaded {rows:,} rows ({size}) in {time.perf_counter() - started:.1f}s", flush=True)


def revisions_from(first: str) -> list[str]:
    """The shipped revisions from ``first`` to head, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused/"))
    ids = [script.revision for script in scripts.walk_revisions()][::-1]
    return ids[ids.index(first) :]


@contextmanager
def worker_process(url: str, endpoint_url: str) -> Iterator[None]:
    """A worker of the last release delivering from ``url`` to the stand-in (see the module
    docstring); this version's worker where the release cannot be built (with a line saying so)."""
    env = {
        **os.environ,
        "OUTBOX_DATABASE_URL": url,
        "OUTBOX_ENDPOINT_URL": endpoint_url,
        "OUTBOX_API_KEY": API_KEY,
    }
    with (
        tempfile.TemporaryDirectory(prefix="outbox-bench-release-") as tree,
        tempfile.NamedTemporaryFile(prefix="outbox-bench-worker-", suffix=".log") as log,
    ):
        try:
            extract_release(Path(tree))
            env["PYTHONPATH"] = tree
            command, cwd = python_command("-c", SERVE_RELEASED_WORKER), tree
            print(f"worker: the release at {RELEASED_COMMIT[:10]} (schema {RELEASED_SCHEMA_HEAD})")
        except ReleaseUnavailable as exc:
            print(f"worker: this version's ({exc}); it claims nothing before its own head")
            command, cwd = python_command("-m", "bench.migration_bench", "--serve-worker"), None
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{tail(log.name)}")
        finally:
            stop_process(proc)


def serve_worker() -> None:
    """This version's worker, as `outbox-worker run` builds it from OUTBOX_* but without the
    start-up schema check; runs until SIGTERM."""
    from outbox_worker.assemble import opened_worker
    from outbox_worker.settings.environment import read_settings

    settings = read_settings()

    async def serve() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with opened_worker(settings) as worker:
            await worker.run(stop)

    run_async(serve)


def empty_to_head(admin_url: str) -> float:
    """Seconds `migrate` takes from an empty database to head."""
    name = unique_name("outbox_bench")
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        started = time.perf_counter()
        migrate.upgrade(with_database(admin_url, name))
        return time.perf_counter() - started
    finally:
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with_application_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


def main() -> None:
    """Parse arguments, run both measurements in throwaway databases, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument("--rate", type=float, default=200.0, help="enqueues per second")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before and after")
    parser.add_argument("--tiny", action="store_true", help="2,000 rows, short windows (CI)")
    parser.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    add_database_option(parser)
    args = parser.parse_args()
    if args.serve_worker:
        serve_worker()
        return
    if args.tiny:
        args.rows, args.settle = 2_000, 0.3
    with server(args.database_url) as (admin_url, where):
        print(f"server: {where}; cores: {os.cpu_count()}; {load()}", flush=True)
        fresh_s = empty_to_head(admin_url)
        name = unique_name("outbox_bench")
        admin_execute(admin_url, f'CREATE DATABASE "{name}"')
        try:
            url = with_database(admin_url, name)
            windows = run_async(lambda: measure(url, args.rows, args.rate, args.settle))
        finally:
            admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"\nat the end: {load()}", flush=True)
    print_table(
        "migrate from an empty database to head",
        ["revisions", "seconds"],
        [[f"base -> {revisions_from(FIRST_MEASURED)[-1]}", f"{fresh_s:.2f}"]],
    )
    print_table(
        f"each revision applied to {args.rows:,} rows while a worker delivers and producers "
        f"enqueue {args.rate:,.0f}/s (longest lock waits sampled every "
        f"{SAMPLE_EVERY_S * 1000:.0f} ms; target: every wait < {TARGET_S:.0f} s)",
        [
            "revision",
            "migration s",
            "enqueues",
            "longest enqueue ms",
            "producer lock wait ms",
            "worker lock wait ms",
            "migration lock wait ms",
            "result",
        ],
        [window.row() for window in windows],
    )


if __name__ == "__main__":
    main()

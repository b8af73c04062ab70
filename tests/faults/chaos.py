"""One chaos run end to end, shared by the CI test and ``python -m bench.chaos``.

``run_chaos(profile)`` owns everything it uses: an embedded PostgreSQL in a temporary directory
of its own (restarted by the driver; the machine's own PostgreSQL is never touched; not under
pytest's tmp_path, whose root any other pytest session on the machine resets to 0700, locking out
the server's user at its next start), a database migrated
with ``outbox_worker.migrate.upgrade``, a stand-in on a loopback port (stopped and started again
on the same port for outages) and the worker processes. It returns the Ledger.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg

from outbox_worker import migrate
from outbox_worker.standin import StandIn
from tests.cases import KEY
from tests.faults.driver import Driver, Events
from tests.faults.ledger import ROWS_QUERY, Ledger, Row, build_ledger
from tests.faults.plan import Plan, Profile, build_plan
from tests.pg import EmbeddedServer, admin_execute, with_database
from tests.processes import worker_env

HTTP_TIMEOUT_S = 1.0
DATABASE = "outbox_chaos"


def chaos_env(profile: Profile, database_url: str, endpoint_url: str) -> dict[str, str]:
    """Worker settings for a chaos run: short timings, so every fault plays out in seconds."""
    return worker_env(
        {
            "OUTBOX_DATABASE_URL": database_url,
            "OUTBOX_ENDPOINT_URL": endpoint_url,
            "OUTBOX_HTTP_TIMEOUT": f"{HTTP_TIMEOUT_S:g}s",
            "OUTBOX_LEASE": "7s",  # must exceed the HTTP timeout + 5 s
            "OUTBOX_POLL_INTERVAL": "200ms",
            "OUTBOX_BACKOFF_BASE": "100ms",
            "OUTBOX_BACKOFF_CAP": "1s",
            "OUTBOX_PROBE_INITIAL": "200ms",
            "OUTBOX_PROBE_CAP": "1s",
            "OUTBOX_MAX_ATTEMPTS": str(profile.max_attempts),
            "OUTBOX_CONCURRENCY": str(profile.concurrency),
            # A 429's slow-down (absurd Retry-After included) stays within the run's pace.
            "OUTBOX_RETRY_AFTER_MAX": "2s",
            "OUTBOX_RATE_LIMITED_PAUSE": "500ms",
        }
    )


async def run_chaos(profile: Profile) -> Ledger:
    """Play ``profile``'s plan against real processes and balance the ledger."""
    # platformdirs warns unless the runtime dir exists with mode 0700 (as in tests/pg.py).
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="outbox-xdg-"))
    with tempfile.TemporaryDirectory(prefix="outbox-chaos-pg-") as workdir:
        return await _run(build_plan(profile), Path(workdir))


async def _run(plan: Plan, workdir: Path) -> Ledger:
    profile = plan.profile
    server = await asyncio.to_thread(EmbeddedServer, workdir / "pgdata")
    try:
        url = with_database(server.url, DATABASE)
        await asyncio.to_thread(admin_execute, server.url, f'CREATE DATABASE "{DATABASE}"')
        await asyncio.to_thread(migrate.upgrade, url)
        standin = _standin(plan)
        await standin.start()
        try:
            driver = Driver(
                plan,
                database_url=url,
                server=server,
                standin=standin,
                worker_env=chaos_env(profile, url, standin.url),
            )
            events = await driver.run()
        finally:
            await standin.stop()
        rows = await _rows(url, events)
        return build_ledger(plan, events, rows, standin.received, http_timeout=HTTP_TIMEOUT_S)
    finally:
        await asyncio.to_thread(server.stop)


def _standin(plan: Plan) -> StandIn:
    standin = StandIn(KEY, seed=plan.profile.seed)
    standin.set_latency(plan.profile.latency)
    for key, fault in plan.faults.items():
        standin.script_for(key, fault.script)
    return standin


async def _rows(url: str, events: Events) -> list[Row]:
    conn = await asyncpg.connect(url, timeout=30)
    try:
        records = await conn.fetch(ROWS_QUERY, list(events.planted_ids))
    finally:
        await conn.close()
    return [Row(**dict(record)) for record in records]

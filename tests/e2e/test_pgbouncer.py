"""Behind a real PgBouncer in transaction mode: the worker and the operator commands need no
setting, the worker polls and says so, and OUTBOX_LISTEN_DATABASE_URL brings LISTEN back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from outbox_worker import enqueue_async
from tests.cases import registration_update
from tests.integration.rows import insert_dead_rows
from tests.pgbouncer import pgbouncer
from tests.processes import Enqueue, StartWorker, acli
from tests.waiting import all_acknowledged, count_by_state, wait_for

# Forbidden log events: a statement that failed through the pooler shows up as one of these.
FAILURES = {
    "delivery.failed",
    "worker.unexpected_error",
    "database.unavailable",
    "listen.failed",
}


@pytest.fixture
def bouncer_url(database_url: str) -> Iterator[str]:
    """URL of this test's database through a PgBouncer in pool_mode = transaction."""
    with pgbouncer(database_url) as url:
        yield url


@pytest.fixture
async def bouncer_pg(bouncer_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An application's asyncpg connection through the bouncer, set up as the README says."""
    conn = await asyncpg.connect(bouncer_url, statement_cache_size=0)
    try:
        yield conn
    finally:
        await conn.close()


async def test_worker_behind_pgbouncer_delivers_and_says_it_polls(
    start_worker: StartWorker,
    bouncer_url: str,
    bouncer_pg: asyncpg.Connection,
    pg: asyncpg.Connection,
) -> None:
    """With only the pooled URL, the worker warns once that it polls and delivers every row."""
    worker = await start_worker({"OUTBOX_DATABASE_URL": bouncer_url})
    warning = await worker.wait_event("listen.unavailable")
    for i in range(150):  # enqueued through the bouncer too, one transaction each
        async with bouncer_pg.transaction():
            await enqueue_async(bouncer_pg, registration_update(i, f"b-{i}"))

    await wait_for(lambda: all_acknowledged(pg, 150), timeout=30, message="150 acknowledged")

    assert "OUTBOX_LISTEN_DATABASE_URL" in warning["hint"]
    assert worker.event_names().count("listen.unavailable") == 1
    assert "listen.started" not in worker.event_names()
    assert not FAILURES & set(worker.event_names())
    assert await worker.terminate() == 0


async def test_listen_url_wakes_workers_behind_pgbouncer_at_once(
    start_worker: StartWorker,
    bouncer_url: str,
    database_url: str,
    enqueue: Enqueue,
    pg: asyncpg.Connection,
) -> None:
    """With OUTBOX_LISTEN_DATABASE_URL direct, a row is delivered long before the next poll."""
    worker = await start_worker(
        {
            "OUTBOX_DATABASE_URL": bouncer_url,
            "OUTBOX_LISTEN_DATABASE_URL": database_url,
            "OUTBOX_POLL_INTERVAL": "1h",
        }
    )
    await worker.wait_event("listen.started")

    await enqueue(5)

    await wait_for(lambda: all_acknowledged(pg, 5), timeout=10, message="woken by NOTIFY")
    assert "listen.unavailable" not in worker.event_names()
    assert not FAILURES & set(worker.event_names())
    assert await worker.terminate() == 0


async def test_operator_commands_work_through_pgbouncer(
    bouncer_url: str, pg: asyncpg.Connection
) -> None:
    """migrate, stats, dead list/show, requeue and purge all succeed through the bouncer."""
    await insert_dead_rows(pg, 3)
    first = await pg.fetchval("SELECT min(id) FROM outbox.messages")

    runs = {
        "migrate": await acli("migrate", db=bouncer_url),
        "stats": await acli("stats", "--json", db=bouncer_url),
        "list": await acli("dead", "list", "--json", db=bouncer_url),
        "show": await acli("dead", "show", str(first), db=bouncer_url),
        "dry": await acli("requeue", "--all", "--dry-run", db=bouncer_url),
        "requeue": await acli("requeue", "--id", str(first), db=bouncer_url),
        "purge": await acli("purge", "--older-than", "1d", "--yes", db=bouncer_url),
    }

    failed = {name: run.err for name, run in runs.items() if run.code != 0}
    assert failed == {}
    assert runs["stats"].json()["dead"] == 3
    assert runs["list"].json()["total_matching"] == 3
    assert await count_by_state(pg) == {"dead": 2, "pending": 1}


async def test_registry_and_pause_work_behind_pgbouncer(
    start_worker: StartWorker,
    bouncer_url: str,
    bouncer_pg: asyncpg.Connection,
    pg: asyncpg.Connection,
) -> None:
    """Through the pooler alone the worker registers (not listening), obeys a pause taken by
    `pause` through the pooler within its poll interval, and delivers after `resume`."""
    worker = await start_worker(
        {"OUTBOX_DATABASE_URL": bouncer_url, "OUTBOX_POLL_INTERVAL": "200ms"}
    )
    await worker.wait_event("listen.unavailable")
    registered = await wait_for(
        lambda: pg.fetchrow(
            "SELECT state, listening FROM outbox.workers WHERE state = 'delivering'"
        ),
        message="the worker registered",
    )
    assert registered["listening"] is False
    paused = await acli("pause", "--reason", "behind the pooler", db=bouncer_url)
    assert paused.code == 0, paused.err
    await worker.wait_event("fleet.paused")
    for i in range(20):
        async with bouncer_pg.transaction():
            await enqueue_async(bouncer_pg, registration_update(i, f"p-{i}"))

    async def listed_paused() -> bool:
        listed = (await acli("workers", "--json", db=bouncer_url)).json()["workers"]
        return [w["state"] for w in listed] == ["paused"]

    await wait_for(listed_paused, message="`workers` lists it paused")
    assert await count_by_state(pg) == {"pending": 20}
    resumed = await acli("resume", db=bouncer_url)
    assert resumed.code == 0, resumed.err
    await wait_for(lambda: all_acknowledged(pg, 20), timeout=30, message="20 acknowledged")
    assert not FAILURES & set(worker.event_names())
    assert await worker.terminate() == 0
    stopped = await pg.fetchval("SELECT state FROM outbox.workers")
    assert stopped == "stopped"

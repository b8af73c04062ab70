"""What the focused fault tests (failover, partitions) share: a quiet plan, a producer that
retries, the drain, the workers' stop and the rows the ledger balances.

Unlike the chaos driver (driver.py), these tests start their workers themselves, each with its
own URL (several hosts, one host, a proxy), and play one fault on a schedule of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg

from outbox_worker import enqueue_async
from outbox_worker.store.connection import READ_ONLY_ERRORS, TRANSIENT_ERRORS
from tests.faults.driver import Events, exit_record
from tests.faults.ledger import ROWS_QUERY, Row
from tests.faults.plan import Plan, Profile
from tests.processes import WorkerProcess
from tests.waiting import wait_for

# What a producer meets during a failover or partition; each makes it retry the batch on a
# new connection (its dedup keys make a batch that did commit a no-op the second time).
PRODUCER_RETRIES: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, *READ_ONLY_ERRORS)
PRODUCER_DEADLINE_S = 60.0


def quiet_profile(seed: int, *, updates: int, enqueue_rate: float, workers: int) -> Profile:
    """Healthy updates only: no kills, windows, restarts or hostile answers in the plan; the
    test plays its one fault itself."""
    return Profile(
        updates=updates,
        seed=seed,
        workers=workers,
        enqueue_rate=enqueue_rate,
        kill_every=(1e6, 1e6),
        pg_restarts=(0, 0),
        window_kinds=(),
        poison=(0.0, 0),
        redirects=(0.0, 0),
        rejected=(0.0, 0),
        always_500=(0.0, 0),
        planted_each=0,
        latency=(0.01, 0.05),
        drain_timeout=60.0,
    )


async def produce(plan: Plan, url: str, events: Events, retries: list[str]) -> None:
    """Enqueue the plan's batches on schedule with ``enqueue_async``, each batch in one
    transaction, retried on a new connection until stored; ``retries`` names what was met."""
    conn: asyncpg.Connection | None = None
    try:
        for batch in plan.batches:
            delay = events.started_at + batch.at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: the plan's enqueue rate
            deadline = time.monotonic() + PRODUCER_DEADLINE_S
            while True:
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(url, timeout=10)
                    async with conn.transaction():
                        for i in range(batch.first, batch.last):
                            await enqueue_async(conn, plan.body(i), dedup_key=plan.keys[i])
                    break
                except PRODUCER_RETRIES as exc:
                    retries.append(type(exc).__name__)
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)  # pacing between reconnections
    finally:
        if conn is not None:
            conn.terminate()


async def count(url: str, where: str) -> int:
    """How many rows of outbox.messages match ``where`` (a constant condition of the test's)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        found: int = await conn.fetchval(f"SELECT count(*) FROM outbox.messages WHERE {where}")
    finally:
        await conn.close()
    return found


OPEN = "state = 'pending' OR lease_token IS NOT NULL"
ACKNOWLEDGED = "state = 'acknowledged'"


async def drain(url: str, events: Events, timeout: float) -> None:
    """Wait (with a deadline) until no row is pending or leased; the ledger says if it failed."""
    began = time.monotonic()

    async def settled() -> bool:
        return await count(url, OPEN) == 0

    with contextlib.suppress(AssertionError):
        await wait_for(settled, timeout=timeout, interval=0.25, message="every row settled")
        events.drained = True
    events.drain_seconds = time.monotonic() - began


async def stop(workers: list[WorkerProcess], events: Events) -> None:
    """SIGTERM every worker and record how each exited (SIGKILL after 30 s)."""
    for worker in workers:
        if worker.returncode is None:
            worker.process.terminate()
    for worker in workers:
        try:
            code = await worker.wait_exit(timeout=30)
        except TimeoutError:
            worker.process.kill()
            code = await worker.wait_exit(timeout=30)
        events.final_exits.append(exit_record(worker, code))


async def rows(url: str) -> list[Row]:
    """Every row as the ledger reads it."""
    conn = await asyncpg.connect(url, timeout=30)
    try:
        records = await conn.fetch(ROWS_QUERY, [])
    finally:
        await conn.close()
    return [Row(**dict(record)) for record in records]

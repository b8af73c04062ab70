"""OUTBOX_RATE_LIMIT holds for the whole fleet: three worker processes share one rate."""

from __future__ import annotations

import bisect

import asyncpg

from outbox_worker.standin import StandIn
from tests.processes import Enqueue, StartWorker
from tests.waiting import wait_for

RATE = 20
WINDOW_S = 6.0


def busiest_second(arrivals: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    return max(bisect.bisect_left(arrivals, at + 1.0) - i for i, at in enumerate(arrivals))


async def _all_sending(pg: asyncpg.Connection, count: int) -> bool:
    """``count`` registered workers, each with sends in its last minute (its registry row)."""
    rows = await pg.fetch("SELECT sends_last_minute FROM outbox.workers")
    return len(rows) == count and all(r["sends_last_minute"] > 0 for r in rows)


async def test_three_workers_share_one_rate_limit(
    start_worker: StartWorker, enqueue: Enqueue, standin: StandIn, pg: asyncpg.Connection
) -> None:
    """Three workers limited to 20/s all send, together at most 20/s +10%, never over 30 in one second."""
    await enqueue(400)
    env = {
        "OUTBOX_RATE_LIMIT": str(RATE),
        "OUTBOX_CONCURRENCY": "4",
        "OUTBOX_BATCH_SIZE": "5",
        "OUTBOX_LEASE": "20s",
    }
    workers = [await start_worker(env) for _ in range(3)]
    for worker in workers:
        await worker.wait_event("worker.started")
    await wait_for(lambda: standin.count > 0, timeout=15, message="a first request")
    first = standin.received[0].at

    await wait_for(
        lambda: standin.received[-1].at >= first + WINDOW_S,
        timeout=30,
        message=f"{WINDOW_S} s of requests",
    )

    arrivals = [r.at for r in standin.received if r.at < first + WINDOW_S]
    # A ceiling only: how many sends a busy machine gets through is no test of the limit (a slot
    # found too late is dropped, by design), while no machine can make the fleet exceed it.
    assert len(arrivals) <= RATE * WINDOW_S * 1.1
    assert busiest_second(arrivals) <= 30
    assert all(r.status == 200 for r in standin.received)
    # The rate is shared, not taken by one: every worker reports sends of its own.
    await wait_for(lambda: _all_sending(pg, len(workers)), message="every worker sending")
    for worker in workers:
        assert await worker.terminate() == 0

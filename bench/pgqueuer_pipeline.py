"""pgqueuer as a delivery pipeline: the fairest equivalent of the worker we could write with it.

Its own queue table holds the same bodies (bytes of the outbox rows' ``payload::text``); one
entrypoint POSTs a job's payload to the stand-in over one aiohttp session whose connector allows
``--concurrency`` (64, as the worker) requests in flight; anything but a 200 raises, so pgqueuer
records the job as failed. A QueueManager over an asyncpg pool dequeues ``--batch-size`` (100)
jobs at a time and holds at most ``--picked-limit`` (200) picked: the worker's posture (batches
of 100, up to two claimed ahead, 64 sends in flight). It runs in ``drain`` mode: it stops by
itself once the queue is empty and its jobs have finished. Periodic log aggregation is off so the
per-job log (the completion times the bench reads) stays whole; by default it runs every 30 s,
which a drain of a few seconds would barely see anyway.

Settings tried on 5,000 jobs (load average about 3 on 2 cores): pgqueuer's per-entrypoint
``concurrency_limit=64`` (enforced in its dequeue SQL) about 590/s; ``max_concurrent_tasks``
instead, batch/picked 10/64: 1,190/s, 32/64: 1,350/s, 50/100: 1,710/s, 100/200: 1,990/s. The
fastest is the default here.

Needs the ``bench`` extra (``pip install -e '.[bench]'``).

    python -m bench.pgqueuer_pipeline --database-url URL --endpoint-url URL --api-key KEY
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from datetime import timedelta

import aiohttp
import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, Queries, QueueManager
from pgqueuer.domain.types import QueueExecutionMode

ENTRYPOINT = "registration"
ENQUEUE_BATCH = 1_000
# Completion times, from pgqueuer's own per-job log (one row per status change).
COMPLETED = """
SELECT count(*) AS done,
       extract(epoch FROM min(created))::float8 AS first_done,
       extract(epoch FROM max(created))::float8 AS last_done
FROM pgqueuer_log WHERE status = 'successful'
"""
REMAINING = "SELECT count(*) FROM pgqueuer"


class DeliveryRefused(Exception):
    """The stand-in answered anything but 200: pgqueuer records the job as failed."""


async def install(database_url: str) -> None:
    """Install pgqueuer's schema (tables, types, triggers) into a migrated bench database."""
    conn = await asyncpg.connect(database_url)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def refill(database_url: str, bodies: Sequence[bytes]) -> None:
    """Empty the queue and its log, then enqueue ``bodies`` in batches (pgqueuer's list form)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        queries = Queries(AsyncpgDriver(conn))
        for start in range(0, len(bodies), ENQUEUE_BATCH):
            chunk = list(bodies[start : start + ENQUEUE_BATCH])
            await queries.enqueue([ENTRYPOINT] * len(chunk), list(chunk), [0] * len(chunk))
        await conn.execute("VACUUM ANALYZE pgqueuer")
    finally:
        await conn.close()


async def drain(
    database_url: str,
    endpoint_url: str,
    api_key: str,
    *,
    concurrency: int,
    batch_size: int,
    picked_limit: int,
) -> None:
    """Run a QueueManager until the queue is empty and every job has finished."""
    headers = {"Authorization": f"token {api_key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with (
        asyncpg.create_pool(database_url, min_size=2, max_size=3) as pool,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        qm = QueueManager(Queries(AsyncpgPoolDriver(pool)))

        async def deliver(job: Job) -> None:
            async with session.post(endpoint_url, data=job.payload, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise DeliveryRefused(response.status)

        qm.entrypoint(ENTRYPOINT)(deliver)
        await qm.run(
            batch_size=batch_size,
            max_concurrent_tasks=picked_limit,
            mode=QueueExecutionMode.drain,
            log_aggregation_interval=timedelta(0),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("OUTBOX_DATABASE_URL"))
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--concurrency", type=int, default=64, help="jobs in flight at most")
    parser.add_argument("--batch-size", type=int, default=100, help="jobs per dequeue")
    parser.add_argument(
        "--picked-limit", type=int, default=200, help="jobs picked at once (>= 2x the batch size)"
    )
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or OUTBOX_DATABASE_URL is required (pgqueuer installed)")
    uvloop.run(
        drain(
            args.database_url,
            args.endpoint_url,
            args.api_key,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            picked_limit=args.picked_limit,
        )
    )


if __name__ == "__main__":
    main()

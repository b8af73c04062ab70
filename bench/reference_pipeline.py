"""The minimal reference pipeline the worker is measured against: no retries, no policy.

Claims ahead in batches of 100 under a lease (FOR UPDATE SKIP LOCKED, like the worker), keeps 64
POSTs of the stored ``payload::text`` in flight over one aiohttp session, and acknowledges every
200 in one UPDATE per 20 ms flush (the worker's default flush interval). Anything but a 200 stays
leased: this is a yardstick for throughput, not a delivery system.

    python -m bench.reference_pipeline --endpoint-url URL --api-key KEY --total N [--database-url]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aiohttp
import asyncpg
import uvloop

BATCH, CONCURRENCY, FLUSH_S = 100, 64, 0.02
CLAIM = """
WITH due AS (
    SELECT id FROM outbox.messages WHERE state = 'pending' AND available_at <= now()
    ORDER BY available_at, id LIMIT $1 FOR UPDATE SKIP LOCKED
)
UPDATE outbox.messages AS m
SET lease_token = $2, claimed_at = now(), available_at = now() + interval '60 seconds'
FROM due WHERE m.id = due.id
RETURNING m.id, m.payload::text AS body
"""
ACK = """
UPDATE outbox.messages SET state = 'acknowledged', acknowledged_at = now(),
    attempts = attempts + 1, last_status = 200, lease_token = NULL
WHERE id = ANY($1::bigint[]) AND state = 'pending'
"""


async def drain(database_url: str, endpoint_url: str, api_key: str, total: int) -> float:
    """Deliver until ``total`` rows are acknowledged; return the seconds it took."""
    started = time.perf_counter()
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=2)
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue(maxsize=BATCH)  # one batch ahead
    acked: list[int] = []
    headers = {"Authorization": f"token {api_key}", "Content-Type": "application/json"}

    async def claim() -> None:
        while True:
            rows = await pool.fetch(CLAIM, BATCH, uuid.uuid4())
            if not rows:
                await asyncio.sleep(0.01)
            for row in rows:
                await queue.put((row["id"], row["body"].encode()))

    async def send(session: aiohttp.ClientSession) -> None:
        while True:
            message_id, body = await queue.get()
            async with session.post(endpoint_url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    acked.append(message_id)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        tasks = [asyncio.create_task(claim())]
        tasks += [asyncio.create_task(send(session)) for _ in range(CONCURRENCY)]
        done = 0
        try:
            while done < total:
                await asyncio.sleep(FLUSH_S)
                if failed := [t for t in tasks if t.done()]:
                    failed[0].result()  # a task died: raise its error instead of hanging
                batch, acked[:] = acked[:], []
                if batch:
                    await pool.execute(ACK, batch)
                    done += len(batch)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    await pool.close()
    return time.perf_counter() - started


def main() -> None:
    """Command line: drain ``--total`` rows and print the rate (imports kept light on purpose)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("OUTBOX_DATABASE_URL"))
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--total", type=int, required=True, help="rows to acknowledge")
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url or OUTBOX_DATABASE_URL is required (a migrated database)")
    # uvloop, as the worker runs (about +20% here for both).
    seconds = uvloop.run(drain(args.database_url, args.endpoint_url, args.api_key, args.total))
    rate = args.total / seconds
    print(f"reference pipeline: {args.total} rows in {seconds:.3f} s, {rate:,.0f}/s")


if __name__ == "__main__":
    main()

"""Requeue of many dead letters: time, batches, longest batch and peak memory.

    python -m bench.requeue_bench [--rows 200000] [--batch-size 5000] [--database-url URL]

Inserts ``--rows`` dead rows with one INSERT ... SELECT generate_series, then requeues them all
with ``store.operations.requeue_dead`` (what `outbox-worker requeue --all --yes` runs), batch by
batch, and prints one table row. The longest batch is the longest any row stays locked; peak RSS
(resource.getrusage) shows that memory does not grow with the number of rows, since only one
batch of ids is in hand at a time.
"""

from __future__ import annotations

import argparse
import resource
import time

import asyncpg

from bench.harness import add_database_option, bench_database, print_table, run_async
from outbox_worker.store import operations as ops
from outbox_worker.store.audit import Actor

INSERT_DEAD = """
INSERT INTO outbox.messages (payload, state, attempts, dead_at, last_status, last_error, history)
SELECT jsonb_build_object(
           'timestamp', 1700000000000,
           'registration', jsonb_build_object('success', true, 'username', 'user' || g),
           'customer', jsonb_build_object('customerId', 'c-' || g, 'email', 'u' || g || '@x.test')),
       'dead', 25, now() - make_interval(secs => g % 86400), 503,
       'HTTP 503: Service Unavailable',
       jsonb_build_array(jsonb_build_object('at', now(), 'status', 503, 'error', 'unavailable',
                                            'latency_ms', 12.5))
FROM generate_series(1, $1::int) AS g
"""


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(url: str, rows: int, batch_size: int) -> list[object]:
    """Insert ``rows`` dead rows, requeue them all, return the table row."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute(INSERT_DEAD, rows)
        await conn.execute("VACUUM ANALYZE outbox.messages")
        print(f"inserted {rows} dead rows in {time.perf_counter() - started:.1f}s", flush=True)
        rss_before = peak_rss_mb()
        batch_times: list[float] = []
        last = time.perf_counter()

        def on_batch(moved: int) -> None:
            nonlocal last
            now = time.perf_counter()
            batch_times.append(now - last)
            last = now

        started = last = time.perf_counter()
        moved = await ops.requeue_dead(
            conn,
            ops.DeadFilters(),
            actor=Actor.cli("requeue_bench"),
            batch_size=batch_size,
            on_progress=on_batch,
        )
        seconds = time.perf_counter() - started
        pending = await conn.fetchval("SELECT count(*) FROM outbox.messages WHERE state='pending'")
        assert moved == rows == pending, (moved, rows, pending)
    finally:
        await conn.close()
    return [
        rows,
        batch_size,
        len(batch_times),
        f"{seconds:.2f}",
        f"{rows / seconds:,.0f}",
        f"{max(batch_times) * 1000:.0f}",
        f"{rss_before:.0f}",
        f"{peak_rss_mb():.0f}",
    ]


def main() -> None:
    """Parse arguments, run the benchmark in a throwaway database, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="dead rows to requeue")
    parser.add_argument("--batch-size", type=int, default=ops.DEFAULT_BATCH_SIZE)
    add_database_option(parser)
    args = parser.parse_args()
    with bench_database(args.database_url) as url:
        row = run_async(lambda: bench(url, args.rows, args.batch_size))
    print_table(
        "requeue of dead letters (store.operations.requeue_dead)",
        [
            "rows",
            "batch size",
            "batches",
            "seconds",
            "rows/s",
            "longest batch ms",
            "peak RSS before MiB",
            "peak RSS after MiB",
        ],
        [row],
    )


if __name__ == "__main__":
    main()

"""History does not slow the claim: draining with 0 and with 1,000,000 acknowledged rows behind.

    python -m bench.history_bench [--rows 20000] [--history 1000000] [--claims 200]

The same ``--rows`` pending rows (the oldest ids) are delivered twice: first in an outbox with no
other rows, then after ``--history`` acknowledged rows were added (acknowledged over the last
day) and each of them updated once more, which leaves as many dead tuples as a day of claims and
acknowledgements does (autovacuum is left to do what it does in production). Each time:
``--claims`` claim statements of 100 rows, timed one by one and handed back (p50/p99 ms); then one
``outbox-worker run`` drains the rows against the stand-in (steady deliveries/s, first to last
``acknowledged_at``). Target: with history at least 0.9x the rate without, for both.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import asyncpg

from bench.delivery_bench import Bench, fill
from bench.harness import (
    add_database_option,
    bench_database,
    load,
    print_table,
    python_command,
    run_async,
    sample_bodies,
    standin_control,
    standin_process,
)
from outbox_worker.limits import MAX_PAYLOAD_BYTES
from outbox_worker.store.delivery import PostgresStore

RESET = """
UPDATE outbox.messages SET state = 'pending', attempts = 0, acknowledged_at = NULL,
    lease_token = NULL, claimed_at = NULL, available_at = now(), last_status = NULL,
    last_error = NULL, last_response = NULL, history = '[]'::jsonb
WHERE id <= $1
"""
PENDING = "SELECT count(*) FROM outbox.messages WHERE state = 'pending' AND id <= $1"
ACKS = """
SELECT extract(epoch FROM max(acknowledged_at) - min(acknowledged_at))::float8
FROM outbox.messages WHERE id <= $1
"""
ADD_HISTORY = """
INSERT INTO outbox.messages (payload, state, attempts, created_at, available_at, acknowledged_at)
SELECT $1::jsonb, 'acknowledged', 1, at, at, at
FROM (SELECT now() - random() * interval '1 day' AS at FROM generate_series(1, $2)) AS t
"""
AUTOVACUUM = """
SELECT regexp_replace(query, '^autovacuum: ', '') FROM pg_stat_activity
WHERE backend_type = 'autovacuum worker' AND datname = current_database()
"""
# A second write to each history row: the claim and the acknowledgement each leave a dead tuple.
CHURN = "UPDATE outbox.messages SET last_status = 200 WHERE id > $1"


async def claim_times(url: str, claims: int) -> list[float]:
    """ms of each of ``claims`` claim statements (100 rows each), handed back right after."""
    store = PostgresStore(url, history_cap=20)
    await store.open()
    times = []
    try:
        for _ in range(claims):
            started = time.perf_counter()
            claimed = await store.claim(100, timedelta(seconds=60), 16 * MAX_PAYLOAD_BYTES)
            times.append((time.perf_counter() - started) * 1000)
            await store.release(claimed)
    finally:
        await store.close()
    return times


async def drain_rate(bench: Bench, rows: int) -> tuple[float, str]:
    """Steady deliveries/s of one worker process delivering the ``rows`` oldest rows, and which
    tables autovacuum was seen working on meanwhile."""
    standin_control(bench.endpoint_url, "reset", post=True)
    conn = await asyncpg.connect(bench.database_url)
    vacuumed: set[str] = set()
    try:
        worker = [python_command("-m", "outbox_worker", "run")]
        with bench.processes("history", worker, bench.worker_env(), exit_by_itself=False):
            deadline = time.monotonic() + 60 + rows / 200
            while await conn.fetchval(PENDING, rows) > 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rows still pending; see {bench.logs}")
                vacuumed.update(r[0] for r in await conn.fetch(AUTOVACUUM))
                await asyncio.sleep(0.05)
        steady_s = await conn.fetchval(ACKS, rows)
    finally:
        await conn.close()
    return float(rows / steady_s), ", ".join(sorted(vacuumed)) or "-"


async def measure(bench: Bench, args: argparse.Namespace, label: str) -> list[object]:
    conn = await asyncpg.connect(bench.database_url)
    try:
        await conn.execute(RESET, args.rows)
        history = await conn.fetchval(
            "SELECT count(*) FROM outbox.messages WHERE id > $1", args.rows
        )
    finally:
        await conn.close()
    times = await claim_times(bench.database_url, args.claims)
    rate, vacuumed = await drain_rate(bench, args.rows)
    p99 = statistics.quantiles(times, n=100)[98]
    print(f"{label} done; {load()}", flush=True)
    return [label, history, statistics.median(times), p99, rate, vacuumed]


async def run(args: argparse.Namespace, bench: Bench) -> None:
    await fill(bench.database_url, args.rows)
    results = [await measure(bench, args, "no history")]
    conn = await asyncpg.connect(bench.database_url)
    try:
        started = time.perf_counter()
        body = sample_bodies(1)[0]
        for done in range(0, args.history, 100_000):  # in slices: one huge statement is no faster
            await conn.execute(ADD_HISTORY, body, min(100_000, args.history - done))
        await conn.execute(CHURN, args.rows)
        print(f"history added in {time.perf_counter() - started:.0f} s; {load()}", flush=True)
    finally:
        await conn.close()
    results.append(await measure(bench, args, f"{args.history:,} acknowledged rows"))
    base = results[0]
    rows = [
        [*r[:5], float(r[2]) / float(base[2]), float(r[4]) / float(base[4]),  # type: ignore[arg-type]
         "met" if float(r[4]) / float(base[4]) >= 0.9 else "MISSED", r[5]]  # type: ignore[arg-type]
        for r in results
    ]  # fmt: skip
    print_table(
        f"Claim and drain of {args.rows:,} rows, with and without history",
        ["outbox", "other rows", "claim p50 ms", "claim p99 ms", "deliveries/s",
         "p50 vs none", "rate vs none", "target rate >= 0.9x", "autovacuum during the drain"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=20_000, help="pending rows drained")
    parser.add_argument("--history", type=int, default=1_000_000, help="acknowledged rows added")
    parser.add_argument("--claims", type=int, default=200, help="claim statements timed")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.history, args.claims = 300, 3_000, 20
    logs = Path(tempfile.mkdtemp(prefix="outbox-bench-logs-"))
    with bench_database(args.database_url) as url, standin_process() as standin:
        try:
            run_async(lambda: run(args, Bench(url, standin, logs)))
        except BaseException:
            print(f"process logs kept in {logs}", flush=True)
            raise
    shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()

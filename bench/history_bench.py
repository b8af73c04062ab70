"""History does not slow the claim: drains with and without a million acknowledged rows behind.

    python -m bench.history_bench [--rows 20000] [--history 1000000] [--churn 250000] [--repeat 3]
        [--vacuumed]

Two databases on the same server, migrated to head. "empty" holds nothing but each round's rows.
"history" first gets ``--history`` acknowledged rows (one INSERT ... SELECT generate_series, with
realistic bodies and a one-entry history each), then a day of traffic's leftovers: ``--churn``
rows enqueued, claimed and acknowledged (one UPDATE each step, as the worker writes them), and
the oldest half of those deleted (retention), with no VACUUM afterwards: the dead row versions
and the dead entries in the pending index stay for autovacuum, as the table's settings have it.
With ``--vacuumed`` a VACUUM follows the churn: the table as autovacuum's next pass leaves it.

Each round, in both databases (alternating which goes first), ``--rows`` fresh pending rows (the
same bodies) are drained twice:

* claim loop, in this process: the worker's own claim statement (``CLAIM_BATCH`` through
  ``PostgresStore.claim``, batch 100, the default lease and byte budget), each batch settled as
  plain acknowledgements through ``PostgresStore.settle``; every claim statement is timed.
  (pg_stat_statements would time it on the server, but it needs shared_preload_libraries.)
* worker: the same rows reset to pending, one ``python -m outbox_worker run`` process delivers
  them to the stand-in (a process of its own); steady deliveries/s from the first to the last
  ``acknowledged_at``, as in delivery_bench.

Target: history / empty >= 0.9 for deliveries/s (median of per-round ratios), both drains.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg

from bench.delivery_bench import Bench, _CpuSample
from bench.harness import (
    add_database_option,
    load,
    print_table,
    process_logs,
    python_command,
    run_async,
    sample_bodies,
    server,
    standin_process,
)
from outbox_worker import migrate
from outbox_worker.models import LeaseToken, MessageId, Settlement, State
from outbox_worker.settings.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE,
    DEFAULT_MAX_CLAIMED_BYTES,
)
from outbox_worker.store.delivery import PostgresStore
from tests.pg import admin_execute, unique_name, with_database

BATCH = DEFAULT_BATCH_SIZE
BODY_VARIETY = 200  # distinct bodies the history cycles through

# A million acknowledged rows in one statement: bodies cycle through $1, times spread over a week.
HISTORY = """
INSERT INTO outbox.messages (payload, state, attempts, created_at, available_at,
    acknowledged_at, last_status, history)
SELECT ($1::text[])[1 + i % cardinality($1::text[])]::jsonb, 'acknowledged', 1, at, at,
    at + interval '40 ms', 200,
    jsonb_build_array(jsonb_build_object('at', at, 'status', 200, 'error', NULL,
                                         'latency_ms', 38.5))
FROM generate_series(1, $2::int) AS i,
     LATERAL (SELECT now() - interval '7 days' + i * interval '1 ms' * (604800000 / $2)) AS t(at)
"""
# A day of traffic through the table, statement by statement as the worker writes it.
CHURN_ENQUEUE = """
INSERT INTO outbox.messages (payload, created_at, available_at)
SELECT ($1::text[])[1 + i % cardinality($1::text[])]::jsonb, at, at
FROM generate_series(1, $2::int) AS i,
     LATERAL (SELECT now() - interval '1 day' + i * interval '1 ms' * (86400000 / $2)) AS t(at)
RETURNING id
"""
CHURN_CLAIM = """
UPDATE outbox.messages SET lease_token = gen_random_uuid(), claimed_at = available_at,
    available_at = available_at + interval '60 seconds'
WHERE state = 'pending'
"""
CHURN_ACK = """
UPDATE outbox.messages SET state = 'acknowledged', acknowledged_at = claimed_at, attempts = 1,
    lease_token = NULL, last_status = 200,
    history = jsonb_build_array(jsonb_build_object('at', claimed_at, 'status', 200))
WHERE state = 'pending'
"""
CHURN_PURGE = "DELETE FROM outbox.messages WHERE id >= $1 AND id < $1 + $2"
ENQUEUE = """
INSERT INTO outbox.messages (payload) SELECT body::jsonb FROM unnest($1::text[]) AS t(body)
RETURNING id
"""
CLEAR_ROUND = "DELETE FROM outbox.messages WHERE id >= $1"
RESET_ROUND = """
UPDATE outbox.messages SET state = 'pending', attempts = 0, acknowledged_at = NULL,
    lease_token = NULL, claimed_at = NULL, available_at = now(), last_status = NULL,
    history = '[]'::jsonb
WHERE id >= $1
"""
ROUND_RESULT = """
SELECT count(*) FILTER (WHERE state <> 'acknowledged') AS pending,
       extract(epoch FROM min(acknowledged_at))::float8 AS first_ack,
       extract(epoch FROM max(acknowledged_at))::float8 AS last_ack
FROM outbox.messages WHERE id >= $1
"""
TABLE_STATE = """
SELECT (SELECT count(*) FROM outbox.messages) AS live,
       n_dead_tup AS dead, pg_total_relation_size('outbox.messages') AS table_bytes,
       pg_relation_size('outbox.messages_claim_idx') AS claim_index_bytes,
       last_autovacuum IS NOT NULL AS autovacuumed
FROM pg_stat_user_tables WHERE relid = 'outbox.messages'::regclass
"""


@dataclass(frozen=True, slots=True)
class Round:
    """One database's drains in one round."""

    table: str  # "empty" or "history"
    round: int
    live_rows: int
    dead_tuples: int
    table_mib: float
    claim_index_kib: float
    claim_p50_ms: float
    claim_p99_ms: float
    claim_loop_rate: float  # claim + settle, no HTTP: deliveries/s the database allows
    worker_rate: float  # steady deliveries/s of one worker process to the stand-in
    worker_cpu_us: float | None


@contextmanager
def two_databases(database_url: str | None) -> Iterator[tuple[str, str]]:
    """Two throwaway databases on one server, migrated to head; dropped afterwards."""
    with server(database_url) as (admin_url, where):
        names = [unique_name("outbox_bench_empty"), unique_name("outbox_bench_history")]
        try:
            for name in names:
                admin_execute(admin_url, f'CREATE DATABASE "{name}"')
                migrate.upgrade(with_database(admin_url, name))
            print(f"databases: {', '.join(names)} on {where}; {load()}", flush=True)
            yield with_database(admin_url, names[0]), with_database(admin_url, names[1])
            print(f"\nat the end: {load()}", flush=True)
        finally:
            for name in names:
                admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def build_history(url: str, history: int, churn: int, *, vacuumed: bool = False) -> None:
    """Acknowledged rows, then a day's churn left for autovacuum (see the module docstring);
    with ``vacuumed``, the churn as autovacuum's next pass leaves it (VACUUM after it)."""
    bodies = sample_bodies(BODY_VARIETY)
    conn = await asyncpg.connect(url)
    try:
        # The table's autovacuum settings act only where the server runs autovacuum at all.
        print(f"server autovacuum: {await conn.fetchval('SHOW autovacuum')}", flush=True)
        started = time.perf_counter()
        if history:
            await conn.execute(HISTORY, bodies, history)
            await conn.execute("VACUUM ANALYZE outbox.messages")  # long since vacuumed
        if churn:
            ids = await conn.fetch(CHURN_ENQUEUE, bodies, churn)
            await conn.execute(CHURN_CLAIM)
            await conn.execute(CHURN_ACK)
            await conn.execute(CHURN_PURGE, ids[0]["id"], churn // 2)
            if vacuumed:
                await conn.execute("VACUUM outbox.messages")
        seconds = time.perf_counter() - started
        print(f"history: {history:,} rows, churn {churn:,}: {seconds:.1f} s", flush=True)
    finally:
        await conn.close()


async def claim_loop(url: str, rows: int) -> tuple[list[float], float]:
    """Claim and acknowledge every pending row with the worker's statements; claim times (s)."""
    store = PostgresStore(url, history_cap=20)
    await store.open()
    timings: list[float] = []
    try:
        started = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            claimed = await store.claim(BATCH, DEFAULT_LEASE, DEFAULT_MAX_CLAIMED_BYTES)
            timings.append(time.perf_counter() - t0)
            if not claimed:
                break
            await store.settle([_acknowledged(m.id, m.lease_token) for m in claimed])
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return timings[:-1] or timings, rows / elapsed


def _acknowledged(message_id: MessageId, token: LeaseToken) -> Settlement:
    return Settlement(
        message_id=message_id,
        lease_token=token,
        state=State.ACKNOWLEDGED,
        attempt_spent=True,
        delay=None,
        status=200,
        error=None,
        latency_s=0.04,
    )


async def worker_drain(bench: Bench, first_id: int, rows: int) -> tuple[float, float | None]:
    """One worker process delivers the round's rows; steady deliveries/s and CPU µs each."""
    conn = await asyncpg.connect(bench.database_url)
    try:
        await conn.execute(RESET_ROUND, first_id)
        await conn.execute("ANALYZE outbox.messages")
        command = [python_command("-m", "outbox_worker", "run")]
        with bench.processes("worker", command, bench.worker_env(), exit_by_itself=False) as procs:
            first: _CpuSample | None = None
            deadline = time.monotonic() + 60 + rows / 200
            while (row := (await conn.fetch(ROUND_RESULT, first_id))[0])["pending"] > 0:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    raise RuntimeError(f"worker: {row['pending']} rows left; see {bench.logs}")
                if first is None and row["pending"] < rows:
                    first = _CpuSample.take(procs, bench.standin.pid, rows - row["pending"])
                await asyncio.sleep(0.05)
            last = _CpuSample.take(procs, bench.standin.pid, rows)
    finally:
        await conn.close()
    steady_s = row["last_ack"] - row["first_ack"]
    return rows / steady_s, last.per_delivery_since(first)[0]


async def one_round(bench: Bench, table: str, round_: int, bodies: list[str]) -> Round:
    """Enqueue ``bodies`` on ``table``'s database; time a claim loop and a worker's drain."""
    conn = await asyncpg.connect(bench.database_url)
    try:
        first_id = (await conn.fetch(ENQUEUE, bodies))[0]["id"]
        await conn.execute("ANALYZE outbox.messages")
        state = await conn.fetchrow(TABLE_STATE)
        assert state is not None
    finally:
        await conn.close()
    timings, loop_rate = await claim_loop(bench.database_url, len(bodies))
    worker_rate, worker_cpu = await worker_drain(bench, first_id, len(bodies))
    conn = await asyncpg.connect(bench.database_url)
    try:
        await conn.execute(CLEAR_ROUND, first_id)  # the history stays the same size every round
    finally:
        await conn.close()
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return Round(
        table=table,
        round=round_,
        live_rows=state["live"],
        dead_tuples=state["dead"],
        table_mib=state["table_bytes"] / 2**20,
        claim_index_kib=state["claim_index_bytes"] / 2**10,
        claim_p50_ms=statistics.median(timings) * 1000,
        claim_p99_ms=cuts[98] * 1000,
        claim_loop_rate=loop_rate,
        worker_rate=worker_rate,
        worker_cpu_us=worker_cpu,
    )


async def run(args: argparse.Namespace, benches: dict[str, Bench]) -> None:
    """Build the history, then drain both tables in interleaved rounds and print the tables."""
    await build_history(
        benches["history"].database_url, args.history, args.churn, vacuumed=args.vacuumed
    )
    bodies = sample_bodies(args.rows)
    rounds: list[Round] = []
    for i in range(args.repeat):
        order = ["empty", "history"] if i % 2 == 0 else ["history", "empty"]
        for table in order:
            rounds.append(await one_round(benches[table], table, i + 1, bodies))
            r = rounds[-1]
            print(f"round {i + 1} {table}: claim p50 {r.claim_p50_ms:.2f} ms, "
                  f"worker {r.worker_rate:,.0f}/s; {load()}", flush=True)  # fmt: skip
    print_rounds(rounds)
    print_summary(rounds)


def print_rounds(rounds: list[Round]) -> None:
    """The table of every drain, in the order they ran."""
    print_table(
        "Drains in the order they ran (table state at the start of each)",
        ["round", "table", "live rows", "dead tuples", "table MiB", "claim idx KiB",
         "claim p50 ms", "claim p99 ms", "claim+settle /s", "worker /s", "worker CPU µs"],
        [
            [r.round, r.table, r.live_rows, r.dead_tuples, r.table_mib, r.claim_index_kib,
             r.claim_p50_ms, r.claim_p99_ms, r.claim_loop_rate, r.worker_rate, r.worker_cpu_us]
            for r in rounds
        ],
    )  # fmt: skip


def print_summary(rounds: list[Round]) -> None:
    """The table of history / empty ratios (medians of per-round ratios) and the verdicts."""
    empty = [r for r in rounds if r.table == "empty"]
    history = [r for r in rounds if r.table == "history"]

    def ratio(field: str, *, lower_is_better: bool = False) -> tuple[float, float, float]:
        values = [
            (getattr(e, field) / getattr(h, field)) if lower_is_better
            else (getattr(h, field) / getattr(e, field))
            for e, h in zip(empty, history, strict=True)
        ]  # fmt: skip
        return statistics.median(values), min(values), max(values)

    rows = []
    for label, field, lower in (
        ("claim p50 (empty / history)", "claim_p50_ms", True),
        ("claim p99 (empty / history)", "claim_p99_ms", True),
        ("claim+settle /s (history / empty)", "claim_loop_rate", False),
        ("worker deliveries/s (history / empty)", "worker_rate", False),
    ):
        median, low, high = ratio(field, lower_is_better=lower)
        gated = field in ("claim_loop_rate", "worker_rate")
        verdict = ("met" if median >= 0.9 else "MISSED") if gated else "-"
        rows.append([label, median, low, high, ">= 0.9" if gated else "-", verdict])
    print_table(
        f"History / empty, medians of per-round ratios ({len(empty)} rounds)",
        ["measure", "median", "min", "max", "target", "result"],
        rows,
    )


def main() -> None:
    """Parse the options, start the databases and the stand-in, run the rounds."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=20_000, help="rows each drain delivers")
    parser.add_argument("--history", type=int, default=1_000_000, help="acknowledged rows behind")
    parser.add_argument("--churn", type=int, default=250_000, help="a day's rows through the table")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--vacuumed",
        action="store_true",
        help="VACUUM after the churn: the table as autovacuum's next pass leaves it "
        "(default: the churn's dead tuples and index entries all still there)",
    )
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.history, args.churn, args.repeat = 300, 20_000, 5_000, 1
    with (
        process_logs() as logs,
        two_databases(args.database_url) as (empty_url, history_url),
        standin_process() as st,
    ):
        benches = {"empty": Bench(empty_url, st, logs), "history": Bench(history_url, st, logs)}
        run_async(lambda: run(args, benches))


if __name__ == "__main__":
    main()

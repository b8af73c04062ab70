"""Enqueue overhead: an application transaction with an outbox enqueue vs with a plain INSERT.

    python -m bench.enqueue_bench [--transactions 5000] [--seconds 3]

(a) Cost per transaction, both shaped like the application's own work:
    plain:  BEGIN; INSERT INTO users ...; INSERT INTO bench_plain (payload) VALUES (json); COMMIT
    outbox: BEGIN; INSERT INTO users ...; outbox_worker.enqueue_async(conn, update);        COMMIT
on one asyncpg connection (and the same pair on SQLAlchemy sync + psycopg), interleaved in rounds
so drift hits both alike. Target: outbox / plain < 1.3. The breakdown shows where the difference
goes: Python validation + serialization (``parse_update(...).to_json()``) against ``json.dumps``,
and the one statement (``SELECT outbox.enqueue``, PL/pgSQL validation + normalization + INSERT +
NOTIFY) against the plain INSERT, timed inside the transaction.

(b) Transactions/s for ``--seconds`` with 1, 8 and 32 connections, each its own transactions, in
this one Python process (so with many the client's CPU is part of what is measured), for each way
of waking the workers, in interleaved rounds (median reported). The designs are revision 0006's
``outbox.insert_message`` with variants of its wake-up created in the bench database only:
    NOTIFY every enqueue     revision 0004: pg_notify in every enqueueing transaction
    row throttle (pgmq)      notify_insert_throttle: UPDATE a throttle row found FOR UPDATE SKIP
                             LOCKED when its interval has passed, and notify
    sequence throttle        shipped (revision 0006): the last wake-up's time in a sequence, one
                             notifier elected by pg_try_advisory_xact_lock; at most 1 per 10 ms
    no NOTIFY                the workers only poll (adaptive polling)
Each stores a pre-serialized body, as does the shipped ``outbox.insert_message`` (revision 0007:
no ON CONFLICT for a keyless update); the Python API ``enqueue_async`` (validate + serialize in
Python, then insert_message) and the SQL API ``outbox.enqueue`` (fast check in PL/pgSQL, the
detailed check only for what it does not clear) are reported as well.
Target: outbox / plain >= 0.9 at every connection count.

(c) The same application transaction with pgqueuer's enqueue and procrastinate's defer joined to
it, at 1, 8 and 32 connections: bench/enqueue_peers.py (the ``bench`` extra; skipped without it).

(d) The same plain/outbox pair through each driver enqueue accepts (asyncpg, SQLAlchemy sync and
async, psycopg 3 sync and async, psycopg2, Django): bench/enqueue_drivers.py.

(e) Trace capture: the transaction of (a) with and without an active OpenTelemetry span, and the
capture alone (bench/trace_capture.py; the ``otel`` extra; skipped without it). Target: <= 1.05.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from sqlalchemy import Connection, create_engine

from bench import enqueue_drivers, enqueue_peers, trace_capture
from bench.app_tables import (
    APP_TABLES,
    INSERT_PLAIN,
    INSERT_PLAIN_NAMED,
    INSERT_USER,
    INSERT_USER_NAMED,
    email_of,
)
from bench.harness import (
    add_database_option,
    bench_database,
    load,
    print_table,
    run_async,
    sample_updates,
)
from outbox_worker import enqueue, enqueue_async
from outbox_worker.enqueue import serialize
from outbox_worker.migration_scripts import SQL_DIR
from outbox_worker.payload.model import parse_update
from outbox_worker.settings.config import sqlalchemy_url

ENQUEUE_SQL = "SELECT outbox.enqueue($1::jsonb, NULL)"
NOTIFY = "SELECT pg_notify('outbox', '')"

CONNECTIONS = (1, 8, 32)

Update = dict[str, Any]
# One application transaction; returns the seconds its second statement took.
Txn = Callable[[asyncpg.Connection, Update, str], Awaitable[float]]


async def plain_txn(conn: asyncpg.Connection, update: Update, body: str) -> float:
    """The floor: the users row, then the update as a plain jsonb row (that second part timed)."""
    async with conn.transaction():
        await conn.execute(INSERT_USER, email_of(update))
        started = time.perf_counter()
        await conn.execute(INSERT_PLAIN, json.dumps(update))
        return time.perf_counter() - started


async def outbox_txn(conn: asyncpg.Connection, update: Update, body: str) -> float:
    """The users row, then enqueue_async (that second part timed)."""
    async with conn.transaction():
        await conn.execute(INSERT_USER, email_of(update))
        started = time.perf_counter()
        await enqueue_async(conn, update)
        return time.perf_counter() - started


def _one_call_txn(sql: str) -> Txn:
    """The application transaction whose second statement is ``sql`` on the pre-serialized body."""

    async def txn(conn: asyncpg.Connection, update: Update, body: str) -> float:
        async with conn.transaction():
            await conn.execute(INSERT_USER, email_of(update))
            started = time.perf_counter()
            await conn.fetchval(sql, body)
            return time.perf_counter() - started

    return txn


# The outbox transaction minus the Python side: the body is serialized beforehand.
outbox_sql_txn = _one_call_txn(ENQUEUE_SQL)


async def plain_notify_txn(conn: asyncpg.Connection, update: Update, body: str) -> float:
    """The plain transaction plus the NOTIFY outbox.enqueue sends: what waking workers costs."""
    async with conn.transaction():
        await conn.execute(INSERT_USER, email_of(update))
        started = time.perf_counter()
        await conn.execute(INSERT_PLAIN, json.dumps(update))
        await conn.execute(NOTIFY)
        return time.perf_counter() - started


# The wake-up designs, as variants of the shipped outbox.insert_message (revision 0006): its
# "IF outbox.claim_wakeup() THEN" line decides whether to NOTIFY.
ROW_THROTTLE = """
CREATE TABLE outbox.bench_wakeup (id int PRIMARY KEY, notified_at timestamptz NOT NULL);
INSERT INTO outbox.bench_wakeup VALUES (1, '-infinity');
CREATE FUNCTION outbox.bench_row_wakeup() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  UPDATE outbox.bench_wakeup SET notified_at = clock_timestamp()
  WHERE id = (SELECT id FROM outbox.bench_wakeup
              WHERE notified_at < clock_timestamp() - interval '10 ms'
              FOR UPDATE SKIP LOCKED);
  RETURN FOUND;
END
$$;
"""
WAKEUPS = {
    "NOTIFY every enqueue": "true",
    "row throttle (pgmq)": "outbox.bench_row_wakeup()",
    "sequence throttle (shipped wake-up)": "outbox.claim_wakeup()",
    "no NOTIFY": "false",
}


def wakeup_variants() -> str:
    """SQL creating outbox.bench_insert_<n>(payload, dedup_key), one per design in WAKEUPS."""
    shipped = (SQL_DIR / "0006_wakeups.sql").read_text(encoding="utf-8")
    start = shipped.index("CREATE OR REPLACE FUNCTION outbox.insert_message")
    function = shipped[start : shipped.index("$$;", start) + 3]
    assert "IF outbox.claim_wakeup() THEN" in function
    variants = [ROW_THROTTLE]
    for i, condition in enumerate(WAKEUPS.values()):
        variant = function.replace("insert_message", f"bench_insert_{i}")
        variants.append(variant.replace("outbox.claim_wakeup()", condition))
    return "\n".join(variants)


def design_txn(index: int) -> Txn:
    """The application transaction storing the pre-serialized body with wake-up design ``index``.

    The body is serialized beforehand, as for the plain INSERT, so that the designs differ only
    in what the database does: with 8 and 32 connections in one Python process, the client's
    CPU (validation is ~30 µs an update) would otherwise cap every outbox row alike.
    """
    return _one_call_txn(f"SELECT outbox.bench_insert_{index}($1::jsonb, NULL)")


# The shipped outbox.insert_message on a pre-serialized body (what enqueue_async calls).
shipped_insert_txn = _one_call_txn("SELECT outbox.insert_message($1::jsonb, NULL)")


async def sql_api_txn(conn: asyncpg.Connection, update: Update, body: str) -> float:
    """The application transaction through the SQL API, outbox.enqueue (PL/pgSQL validation)."""
    async with conn.transaction():
        await conn.execute(INSERT_USER, email_of(update))
        started = time.perf_counter()
        await conn.fetchval(ENQUEUE_SQL, json.dumps(update))
        return time.perf_counter() - started


ASYNC_PATHS: dict[str, Txn] = {
    "plain INSERT (asyncpg)": plain_txn,
    "outbox enqueue_async (asyncpg)": outbox_txn,
    "outbox, body pre-serialized (asyncpg)": outbox_sql_txn,
    "plain INSERT + NOTIFY (asyncpg)": plain_notify_txn,
}
# The parts of outbox.enqueue, each alone, as one statement on a pre-serialized body.
SQL_PARTS = {
    "SELECT $1::jsonb (round-trip floor)": "SELECT $1::jsonb IS NOT NULL",
    "SELECT outbox.validate_update($1)": "SELECT outbox.validate_update($1::jsonb)",
    "  of which the fast check, is_plainly_valid": "SELECT outbox.is_plainly_valid($1::jsonb)",
    "  the detailed check alone, update_problems": "SELECT outbox.update_problems($1::jsonb)",
    "SELECT outbox.normalize_update($1)": "SELECT outbox.normalize_update($1::jsonb)",
}


async def cost_per_transaction(
    url: str, updates: list[Update], bodies: list[str], transactions: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """µs per transaction and µs of its second statement, per path, interleaved in rounds."""
    conn = await asyncpg.connect(url)
    total = dict.fromkeys(ASYNC_PATHS, 0.0)
    statement = dict.fromkeys(ASYNC_PATHS, 0.0)
    per_round = max(1, transactions // rounds)
    try:
        for txn in ASYNC_PATHS.values():  # warm-up: plans cached, pages in memory
            for i in range(min(200, per_round)):
                await txn(conn, updates[i % len(updates)], bodies[i % len(bodies)])
        for _ in range(rounds):
            for name, txn in ASYNC_PATHS.items():
                started = time.perf_counter()
                for i in range(per_round):
                    statement[name] += await txn(
                        conn, updates[i % len(updates)], bodies[i % len(bodies)]
                    )
                total[name] += time.perf_counter() - started
    finally:
        await conn.close()
    count = per_round * rounds
    return {name: (total[name] / count * 1e6, statement[name] / count * 1e6) for name in total}


def sync_cost_per_transaction(
    url: str, updates: list[Update], transactions: int, rounds: int
) -> dict[str, float]:
    """The same plain/outbox pair on SQLAlchemy's sync engine with psycopg 3."""
    engine = create_engine(sqlalchemy_url(url, "psycopg"), pool_size=1)

    def plain(conn: Connection, update: Update) -> None:
        conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
        conn.execute(INSERT_PLAIN_NAMED, {"payload": json.dumps(update)})

    def outbox(conn: Connection, update: Update) -> None:
        conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
        enqueue(conn, update)

    paths = {"plain INSERT (SQLAlchemy sync, psycopg)": plain,
             "outbox enqueue (SQLAlchemy sync, psycopg)": outbox}  # fmt: skip
    total = dict.fromkeys(paths, 0.0)
    per_round = max(1, transactions // rounds)
    try:
        for path in paths.values():  # warm-up
            for i in range(min(200, per_round)):
                with engine.begin() as conn:
                    path(conn, updates[i % len(updates)])
        for name, path in [*paths.items()] * rounds:
            started = time.perf_counter()
            for i in range(per_round):
                with engine.begin() as conn:
                    path(conn, updates[i % len(updates)])
            total[name] += time.perf_counter() - started
        return {name: total[name] / (per_round * rounds) * 1e6 for name in total}
    finally:
        engine.dispose()


async def sql_part_cost(url: str, bodies: list[str], statements: int) -> dict[str, float]:
    """µs per statement for each part of outbox.enqueue, run alone (no transaction block)."""
    conn = await asyncpg.connect(url)
    try:
        costs = {}
        for name, sql in SQL_PARTS.items():
            for body in bodies[:50]:  # warm-up
                await conn.fetchval(sql, body)
            started = time.perf_counter()
            for i in range(statements):
                await conn.fetchval(sql, bodies[i % len(bodies)])
            costs[name] = (time.perf_counter() - started) / statements * 1e6
        return costs
    finally:
        await conn.close()


def python_cost(updates: list[Update], transactions: int) -> tuple[float, float]:
    """µs per update of parse_update + to_json, and of json.dumps, with no I/O."""
    count = max(transactions, 1000)
    started = time.perf_counter()
    for i in range(count):
        parse_update(updates[i % len(updates)]).to_json()
    validated = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(count):
        json.dumps(updates[i % len(updates)])
    dumped = time.perf_counter() - started
    return validated / count * 1e6, dumped / count * 1e6


_BODIES: dict[int, list[str]] = {}


def _bodies(updates: list[Update]) -> list[str]:
    """The stored text of each update, serialized once per run (not inside the timed loop)."""
    key = id(updates)
    if key not in _BODIES:
        _BODIES[key] = [serialize(u) for u in updates]
    return _BODIES[key]


async def throughput(
    url: str, updates: list[Update], txn: Txn, connections: int, seconds: float
) -> float:
    """Transactions/s with ``connections`` connections each running transactions back to back."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    deadline = time.perf_counter() + seconds
    bodies = _bodies(updates)

    async def loop(conn: asyncpg.Connection, offset: int) -> int:
        done = 0
        while time.perf_counter() < deadline:
            i = (offset + done) % len(updates)
            await txn(conn, updates[i], bodies[i])
            done += 1
        return done

    try:
        started = time.perf_counter()
        counts = await asyncio.gather(*(loop(c, i * 97) for i, c in enumerate(conns)))
        return sum(counts) / (time.perf_counter() - started)
    finally:
        for conn in conns:
            await conn.close()


async def run_async_part(args: argparse.Namespace, url: str, updates: list[Update]) -> None:
    """Create the tables and wake-up variants, then measure and print tables (a) to (e)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(APP_TABLES)
        await conn.execute(wakeup_variants())
    finally:
        await conn.close()
    if not args.only_throughput:
        await cost_table(args, url, updates)
    await throughput_table(args, url, updates)
    # (c): the same transaction with pgqueuer's and procrastinate's enqueue (bench/enqueue_peers).
    await enqueue_peers.peers_table(url, updates, args.seconds, args.throughput_rounds)
    if not args.only_throughput:
        # (d): the same pair through every driver enqueue accepts (bench/enqueue_drivers).
        await enqueue_drivers.drivers_table(url, updates, args.transactions // 2, args.rounds)
    # (e): trace capture; last, since it imports OpenTelemetry.
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        print("(e) trace capture: skipped (pip install -e '.[otel]')", flush=True)
    elif not args.only_throughput:
        await trace_capture.capture_table(url, updates, args.transactions, args.rounds)


async def cost_table(args: argparse.Namespace, url: str, updates: list[Update]) -> None:
    """(a): µs per transaction for each path, and the breakdown."""
    bodies = [parse_update(u).to_json() for u in updates]
    costs = await cost_per_transaction(url, updates, bodies, args.transactions, args.rounds)
    sync_costs = sync_cost_per_transaction(url, updates, args.transactions // 2, args.rounds)
    validate_us, dumps_us = python_cost(updates, args.transactions)
    plain_us, _ = costs["plain INSERT (asyncpg)"]
    sync_plain_us = sync_costs["plain INSERT (SQLAlchemy sync, psycopg)"]
    rows: list[list[object]] = []
    for name, (us, stmt_us) in costs.items():
        rows.append([name, us, us / plain_us, stmt_us, _verdict(name, us / plain_us)])
    for name, us in sync_costs.items():
        rows.append([name, us, us / sync_plain_us, None, _verdict(name, us / sync_plain_us)])
    rows.append(["breakdown: parse_update + to_json (no I/O)", validate_us, None, None, ""])
    rows.append(["breakdown: json.dumps (no I/O)", dumps_us, None, None, ""])
    for name, us in (await sql_part_cost(url, bodies, args.transactions)).items():
        rows.append([f"breakdown: {name}", us, None, None, ""])
    print_table(
        f"(a) Cost of one application transaction ({args.rounds} rounds x "
        f"{args.transactions // args.rounds} transactions per path)",
        ["path", "µs / txn", "vs plain", "2nd statement µs", "target < 1.3x"],
        rows,
    )


async def throughput_table(args: argparse.Namespace, url: str, updates: list[Update]) -> None:
    """(b): every design at 1, 8 and 32 connections, in interleaved rounds; medians."""
    designs: dict[str, Txn] = {"plain INSERT": plain_txn}
    for i, name in enumerate(WAKEUPS):
        designs[f"insert_message, {name}"] = design_txn(i)
    designs["insert_message (shipped, revision 0007)"] = shipped_insert_txn
    designs["Python API enqueue_async (shipped)"] = outbox_txn
    designs["SQL API outbox.enqueue (shipped)"] = sql_api_txn
    rates: dict[tuple[str, int], list[float]] = {}
    for txn in designs.values():  # warm-up: plans cached, pages in memory, tables extended
        await throughput(url, updates, txn, 8, min(args.seconds, 1.0))
    names = list(designs)
    for round_ in range(args.throughput_rounds):
        for connections in CONNECTIONS:
            # Each round starts with another design, so drift does not favour one of them.
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                rate = await throughput(url, updates, designs[name], connections, args.seconds)
                rates.setdefault((name, connections), []).append(rate)
        print(f"(b) round {round_ + 1} done; {load()}", flush=True)
    rows: list[list[object]] = []
    for connections in CONNECTIONS:
        for name in designs:
            runs = rates[(name, connections)]
            ratio = statistics.median(
                [r / p for r, p in zip(runs, rates[("plain INSERT", connections)], strict=True)]
            )
            verdict = "" if name == "plain INSERT" else ("met" if ratio >= 0.9 else "MISSED")
            rows.append([connections, name, statistics.median(runs), ratio, verdict])
    print_table(
        f"(b) Transactions/s, INSERT users + plain INSERT or enqueue, {args.seconds:g} s each, "
        f"median of {args.throughput_rounds} interleaved rounds",
        ["connections", "design", "txn/s", "vs plain (median of rounds)", "target >= 0.9"],
        rows,
    )


def _verdict(name: str, ratio: float) -> str:
    if not name.startswith("outbox enqueue"):
        return ""
    return "met" if ratio < 1.3 else "MISSED"


def main() -> None:
    """Parse the options and print every table, measured on a throwaway database."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--transactions", type=int, default=5000, help="per path, in (a)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds in (a)")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run in (b)")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="rounds in (b)")
    parser.add_argument("--only-throughput", action="store_true", help="skip (a)")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.transactions, args.rounds, args.seconds, args.throughput_rounds = 200, 2, 0.3, 1
    updates = sample_updates(500)
    with bench_database(args.database_url) as url:
        run_async(lambda: run_async_part(args, url, updates))


if __name__ == "__main__":
    main()

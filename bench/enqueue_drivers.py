"""(d) The application transaction through each driver enqueue accepts, beside its plain INSERT.

    python -m bench.enqueue_drivers [--transactions 2000] [--rounds 4] [--tiny]
    (also run by ``python -m bench.enqueue_bench`` after its table (a))

For each driver, on one connection, interleaved in rounds so drift hits both alike:
    plain:  BEGIN; INSERT INTO users ...; INSERT INTO bench_plain (payload) VALUES (json); COMMIT
    outbox: BEGIN; INSERT INTO users ...; <the driver's enqueue>;                        COMMIT
asyncpg (``conn.transaction()``), SQLAlchemy async on asyncpg and sync on psycopg 3
(``engine.begin()``), psycopg 3 sync and async, psycopg2 (commit on the connection), Django on
psycopg 3 (``transaction.atomic()`` and ``outbox_worker.django.enqueue``). Each enqueue is the one
statement ``outbox.insert_message`` after validation in Python; its transaction check costs well
under a microsecond. A driver that is not installed is skipped with a printed line.
Target: outbox / plain < 1.3 on every driver.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from bench.app_tables import (
    APP_TABLES,
    INSERT_PLAIN,
    INSERT_PLAIN_FORMAT,
    INSERT_PLAIN_NAMED,
    INSERT_USER,
    INSERT_USER_FORMAT,
    INSERT_USER_NAMED,
    email_of,
)
from bench.harness import (
    add_database_option,
    bench_database,
    print_table,
    run_async,
    sample_updates,
)
from outbox_worker import enqueue, enqueue_async
from outbox_worker.settings.config import sqlalchemy_url

Update = dict[str, Any]
# One whole application transaction on the driver's connection.
SyncTxn = Callable[[Update], None]
AsyncTxn = Callable[[Update], Awaitable[None]]
# A driver's plain and outbox transactions, opened on a URL; closed by the context.
SyncPair = tuple[SyncTxn, SyncTxn]
AsyncPair = tuple[AsyncTxn, AsyncTxn]


# --- asynchronous drivers ------------------------------------------------------------------------


async def _asyncpg(url: str, closers: list[Callable[[], Awaitable[Any]]]) -> AsyncPair:
    conn = await asyncpg.connect(url)
    closers.append(conn.close)

    async def plain(update: Update) -> None:
        async with conn.transaction():
            await conn.execute(INSERT_USER, email_of(update))
            await conn.execute(INSERT_PLAIN, json.dumps(update))

    async def outbox(update: Update) -> None:
        async with conn.transaction():
            await conn.execute(INSERT_USER, email_of(update))
            await enqueue_async(conn, update)

    return plain, outbox


async def _sqlalchemy_async(url: str, closers: list[Callable[[], Awaitable[Any]]]) -> AsyncPair:
    engine = create_async_engine(sqlalchemy_url(url), pool_size=1)
    closers.append(engine.dispose)

    async def plain(update: Update) -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
            await conn.execute(INSERT_PLAIN_NAMED, {"payload": json.dumps(update)})

    async def outbox(update: Update) -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
            await enqueue_async(conn, update)

    return plain, outbox


async def _psycopg_async(url: str, closers: list[Callable[[], Awaitable[Any]]]) -> AsyncPair:
    conn = await psycopg.AsyncConnection.connect(url)
    closers.append(conn.close)

    async def plain(update: Update) -> None:
        await conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        await conn.execute(INSERT_PLAIN_FORMAT, (json.dumps(update),))
        await conn.commit()

    async def outbox(update: Update) -> None:
        await conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        await enqueue_async(conn, update)
        await conn.commit()

    return plain, outbox


ASYNC_DRIVERS = {
    "asyncpg": _asyncpg,
    "SQLAlchemy async (asyncpg)": _sqlalchemy_async,
    "psycopg 3 async": _psycopg_async,
}


# --- synchronous drivers -------------------------------------------------------------------------


def _sqlalchemy_sync(url: str, closers: list[Callable[[], Any]]) -> SyncPair:
    engine = create_engine(sqlalchemy_url(url, "psycopg"), pool_size=1)
    closers.append(engine.dispose)

    def plain(update: Update) -> None:
        with engine.begin() as conn:
            conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
            conn.execute(INSERT_PLAIN_NAMED, {"payload": json.dumps(update)})

    def outbox(update: Update) -> None:
        with engine.begin() as conn:
            conn.execute(INSERT_USER_NAMED, {"email": email_of(update)})
            enqueue(conn, update)

    return plain, outbox


def _psycopg_sync(url: str, closers: list[Callable[[], Any]]) -> SyncPair:
    conn = psycopg.connect(url)
    closers.append(conn.close)

    def plain(update: Update) -> None:
        conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        conn.execute(INSERT_PLAIN_FORMAT, (json.dumps(update),))
        conn.commit()

    def outbox(update: Update) -> None:
        conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        enqueue(conn, update)
        conn.commit()

    return plain, outbox


def _psycopg2(url: str, closers: list[Callable[[], Any]]) -> SyncPair:
    import psycopg2

    conn = psycopg2.connect(url)
    closers.append(conn.close)
    cursor = conn.cursor()

    def plain(update: Update) -> None:
        cursor.execute(INSERT_USER_FORMAT, (email_of(update),))
        cursor.execute(INSERT_PLAIN_FORMAT, (json.dumps(update),))
        conn.commit()

    def outbox(update: Update) -> None:
        cursor.execute(INSERT_USER_FORMAT, (email_of(update),))
        enqueue(cursor, update)
        conn.commit()

    return plain, outbox


def _django(url: str, closers: list[Callable[[], Any]]) -> SyncPair:
    import django
    from django.conf import settings
    from django.db import connection, connections, transaction

    from outbox_worker.django import enqueue as django_enqueue

    info = conninfo_to_dict(url)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": info["dbname"],
        "USER": info.get("user", ""),
        "PASSWORD": info.get("password", ""),
        "HOST": info.get("host", ""),
        "PORT": info.get("port", ""),
    }
    settings.configure(DATABASES={"default": database}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()
    closers.append(connections.close_all)

    def plain(update: Update) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(INSERT_USER_FORMAT, (email_of(update),))
            cursor.execute(INSERT_PLAIN_FORMAT, (json.dumps(update),))

    def outbox(update: Update) -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(INSERT_USER_FORMAT, (email_of(update),))
            django_enqueue(update)

    return plain, outbox


SYNC_DRIVERS = {
    "SQLAlchemy sync (psycopg 3)": _sqlalchemy_sync,
    "psycopg 3": _psycopg_sync,
    "psycopg2": _psycopg2,
    "Django (psycopg 3)": _django,
}
# The package each optional driver needs; its rows are skipped without it.
_NEEDS = {"psycopg2": "psycopg2", "Django (psycopg 3)": "django"}


# --- measuring -----------------------------------------------------------------------------------


def _per_round(transactions: int, rounds: int) -> int:
    return max(1, transactions // rounds)


def _measure_sync(
    url: str, updates: list[Update], transactions: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """µs per plain and per outbox transaction, for each installed sync driver."""
    closers: list[Callable[[], Any]] = []
    pairs = {}
    for name, opener in SYNC_DRIVERS.items():
        if name in _NEEDS and importlib.util.find_spec(_NEEDS[name]) is None:
            print(f"(d) {name}: skipped, {_NEEDS[name]} is not installed")
            continue
        pairs[name] = opener(url, closers)
    count = _per_round(transactions, rounds)
    totals = {(name, kind): 0.0 for name in pairs for kind in (0, 1)}
    try:
        for i in range(min(200, count)):  # warm-up: plans cached, pages in memory
            for pair in pairs.values():
                pair[0](updates[i % len(updates)])
                pair[1](updates[i % len(updates)])
        for _ in range(rounds):
            for name, pair in pairs.items():
                for kind, txn in enumerate(pair):
                    started = time.perf_counter()
                    for i in range(count):
                        txn(updates[i % len(updates)])
                    totals[(name, kind)] += time.perf_counter() - started
    finally:
        for close in closers:
            close()
    done = count * rounds
    return {
        name: (totals[(name, 0)] / done * 1e6, totals[(name, 1)] / done * 1e6) for name in pairs
    }


async def _measure_async(
    url: str, updates: list[Update], transactions: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """µs per plain and per outbox transaction, for each async driver."""
    closers: list[Callable[[], Awaitable[Any]]] = []
    count = _per_round(transactions, rounds)
    try:
        pairs = {name: await opener(url, closers) for name, opener in ASYNC_DRIVERS.items()}
        totals = {(name, kind): 0.0 for name in pairs for kind in (0, 1)}
        for i in range(min(200, count)):  # warm-up
            for pair in pairs.values():
                await pair[0](updates[i % len(updates)])
                await pair[1](updates[i % len(updates)])
        for _ in range(rounds):
            for name, pair in pairs.items():
                for kind, txn in enumerate(pair):
                    started = time.perf_counter()
                    for i in range(count):
                        await txn(updates[i % len(updates)])
                    totals[(name, kind)] += time.perf_counter() - started
    finally:
        for close in closers:
            await close()
    done = count * rounds
    return {
        name: (totals[(name, 0)] / done * 1e6, totals[(name, 1)] / done * 1e6) for name in pairs
    }


async def drivers_table(url: str, updates: list[Update], transactions: int, rounds: int) -> None:
    """(d): each driver's plain and outbox transaction, µs each and their ratio."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(APP_TABLES)
    finally:
        await conn.close()
    costs = await _measure_async(url, updates, transactions, rounds)
    # In a thread: Django refuses database calls from a thread whose event loop is running.
    costs |= await asyncio.to_thread(_measure_sync, url, updates, transactions, rounds)
    rows: list[list[object]] = []
    for name, (plain_us, outbox_us) in costs.items():
        ratio = outbox_us / plain_us
        rows.append([name, plain_us, outbox_us, ratio, "met" if ratio < 1.3 else "MISSED"])
    print_table(
        f"(d) One application transaction per driver ({rounds} rounds x "
        f"{_per_round(transactions, rounds)} transactions per path, one connection)",
        ["driver", "plain µs / txn", "outbox µs / txn", "outbox / plain", "target < 1.3x"],
        rows,
    )


def main() -> None:
    """Parse the options and print table (d), measured on a throwaway database."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--transactions", type=int, default=2000, help="per path and driver")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.transactions, args.rounds = 100, 2
    updates = sample_updates(500)
    with bench_database(args.database_url) as url:
        run_async(lambda: drivers_table(url, updates, args.transactions, args.rounds))


if __name__ == "__main__":
    main()

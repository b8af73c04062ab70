"""(c) Enqueue against peers, each inside the application's own transaction.

    python -m bench.enqueue_peers [--seconds 3] [--rounds 3] [--tiny]
    (also run by ``python -m bench.enqueue_bench`` after its tables (a) and (b))

The same application transaction as enqueue_bench, ``BEGIN; INSERT INTO users ...; <enqueue>;
COMMIT``, where <enqueue> is:
    plain INSERT                 INSERT INTO bench_plain (payload) VALUES ($1::jsonb): the floor
    plain INSERT + NOTIFY        the same and ``pg_notify``: the part of a peer's cost that is its
                                 wake-up (a NOTIFY holds a cluster-wide lock through the commit)
    Python API enqueue_async     validate + serialize in Python, ``outbox.insert_message``
    pgqueuer enqueue             ``Queries(AsyncpgDriver(conn)).enqueue(entrypoint, payload)`` on
                                 the caller's asyncpg connection (its statement trigger NOTIFYs)
    procrastinate defer_async    ``task.configure(connection=conn).defer_async(update=...)`` on
                                 the caller's psycopg 3 connection: the way procrastinate offers to
                                 join a caller's transaction outside Django (its Django connector
                                 does the same on Django's connection); its row trigger NOTIFYs
pgqueuer runs on asyncpg and procrastinate on psycopg 3, so each driver has its own plain INSERT
and Python API row; every row is a ratio to the plain transaction on its own driver, and the
Python API on the peer's driver is divided by the peer (where the Python API does not accept
psycopg yet, the asyncpg API stands in, and the table says so). 1, 8 and 32 connections, each its
own transactions, in this one Python process; interleaved rounds with the order rotated; medians
of per-round ratios. Peers enqueue ``json.dumps(update)`` as they are: no validation.

Targets: Python API / peer >= 1.25 at 8 and 32 connections (both peers NOTIFY from every
enqueueing transaction, which serializes committing transactions cluster-wide), >= 1.1 at 1.
Each run also records every transaction's wall time. At 1 connection the rate is 1 / the mean of
those times, and on a loaded machine a preempted client or backend stretches some transactions by
whole scheduler slices, so the rate moves with the load far more than the paths differ; the
median time does not. The 1-connection target is therefore judged on the median (Python API /
peer = the peer's median µs / the API's), with the rate ratio printed beside it; from 8
connections up on the rate, where waiting for each other is what is measured. Beside them, CPU
per transaction: this process's (client) and the backends' (server, from /proc when the server
runs on this machine): the work each path costs, which the load inflates less than it does time.
pgqueuer and procrastinate are the ``bench`` extra; without either, its rows are skipped with a
printed line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import pathlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg

from bench.app_tables import (
    APP_TABLES,
    INSERT_PLAIN,
    INSERT_PLAIN_FORMAT,
    INSERT_USER,
    INSERT_USER_FORMAT,
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
from outbox_worker import enqueue_async

ASYNCPG, PSYCOPG = "asyncpg", "psycopg 3"
PLAIN, API, PGQUEUER, PROCRASTINATE = "plain INSERT", "Python API", "pgqueuer", "procrastinate"
# What a path is in the table: the floor of its driver, the Python API, a peer, or a reference.
FLOOR, OURS, PEER, REFERENCE = "floor", "ours", "peer", "reference"
CONNECTIONS = (1, 8, 32)
INSTALL = "pip install -e '.[bench]'"

NOTIFY = "SELECT pg_notify('bench_peers', '')"

Update = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Client:
    """One connection of a path, with what its enqueue needs beside it (pgqueuer's Queries)."""

    conn: Any  # asyncpg.Connection or psycopg.AsyncConnection
    helper: Any = None

    @property
    def backend_pid(self) -> int:
        """The PID of the server process serving this connection."""
        if isinstance(self.conn, asyncpg.Connection):
            return self.conn.get_server_pid()
        return int(self.conn.info.backend_pid)


@dataclass(frozen=True, slots=True)
class Path:
    """One way to write the application's transaction, on one driver."""

    name: str
    driver: str
    role: str  # FLOOR, OURS, PEER or REFERENCE
    connect: Callable[[str], Awaitable[Client]]
    txn: Callable[[Client, Update], Awaitable[None]]


def target(connections: int) -> float:
    """Python API / peer wanted: 1.1 at one connection (latency-bound), 1.25 with more."""
    return 1.1 if connections == 1 else 1.25


# --- asyncpg --------------------------------------------------------------------------------


async def _asyncpg_client(url: str) -> Client:
    return Client(await asyncpg.connect(url))


async def _asyncpg_plain(client: Client, update: Update) -> None:
    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER, email_of(update))
        await client.conn.execute(INSERT_PLAIN, json.dumps(update))


async def _asyncpg_api(client: Client, update: Update) -> None:
    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER, email_of(update))
        await enqueue_async(client.conn, update)


async def _asyncpg_notify(client: Client, update: Update) -> None:
    """The plain transaction plus one NOTIFY, as each peer sends: what that alone costs."""
    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER, email_of(update))
        await client.conn.execute(INSERT_PLAIN, json.dumps(update))
        await client.conn.execute(NOTIFY)


async def _pgqueuer_client(url: str) -> Client:
    from pgqueuer import AsyncpgDriver, Queries  # the bench extra: imported only when installed

    conn = await asyncpg.connect(url)
    # Built once per connection, as an application holds it.
    return Client(conn, Queries(AsyncpgDriver(conn)))


async def _pgqueuer_txn(client: Client, update: Update) -> None:
    from bench.pgqueuer_pipeline import ENTRYPOINT

    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER, email_of(update))
        await client.helper.enqueue(ENTRYPOINT, json.dumps(update).encode())


# --- psycopg 3 ------------------------------------------------------------------------------


async def _psycopg_client(url: str) -> Client:
    # autocommit: each transaction() block sends its own BEGIN and COMMIT, as asyncpg's does.
    return Client(await psycopg.AsyncConnection.connect(url, autocommit=True))


async def _psycopg_plain(client: Client, update: Update) -> None:
    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        await client.conn.execute(INSERT_PLAIN_FORMAT, (json.dumps(update),))


async def _psycopg_api(client: Client, update: Update) -> None:
    async with client.conn.transaction():
        await client.conn.execute(INSERT_USER_FORMAT, (email_of(update),))
        await enqueue_async(client.conn, update)


def _registration(update: Update) -> None:
    """procrastinate's task: never run, the bench only defers it."""


def _procrastinate_path(url: str) -> Path:
    """procrastinate's defer on the caller's psycopg connection (``configure(connection=...)``)."""
    import procrastinate  # the bench extra: imported only when installed

    # The connector's pool is never opened: with connection= the INSERT runs on the caller's.
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    # Not decorator syntax: without the bench extra, mypy sees app.task as untyped.
    registration = app.task(name="registration")(_registration)

    async def txn(client: Client, update: Update) -> None:
        async with client.conn.transaction():
            await client.conn.execute(INSERT_USER_FORMAT, (email_of(update),))
            await registration.configure(connection=client.conn).defer_async(update=update)

    return Path(f"{PROCRASTINATE} defer_async", PSYCOPG, PEER, _psycopg_client, txn)


async def install_procrastinate(url: str) -> None:
    """procrastinate's schema (tables, functions, the NOTIFY trigger) in the bench database."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


def have(module: str) -> bool:
    """Whether ``module`` (a peer from the bench extra) is installed."""
    return importlib.util.find_spec(module) is not None


async def psycopg_api_supported(url: str, update: Update) -> bool:
    """Whether enqueue_async accepts a psycopg AsyncConnection (issue 19's drivers); rolled back."""
    client = await _psycopg_client(url)
    try:
        async with client.conn.transaction(force_rollback=True):
            await enqueue_async(client.conn, update)
    except Exception:  # an unsupported connection type, whichever error says so
        return False
    finally:
        await client.conn.close()
    return True


async def paths(url: str, updates: list[Update]) -> list[Path]:
    """Every path this run can measure; a skipped peer is announced with a printed line."""
    found = [
        Path(f"{PLAIN} ({ASYNCPG})", ASYNCPG, FLOOR, _asyncpg_client, _asyncpg_plain),
        Path(f"{API} enqueue_async ({ASYNCPG})", ASYNCPG, OURS, _asyncpg_client, _asyncpg_api),
        Path(f"{PLAIN} + NOTIFY ({ASYNCPG})", ASYNCPG, REFERENCE, _asyncpg_client, _asyncpg_notify),
    ]
    if have("pgqueuer"):
        from bench import pgqueuer_pipeline

        await pgqueuer_pipeline.install(url)
        found.append(Path(f"{PGQUEUER} enqueue", ASYNCPG, PEER, _pgqueuer_client, _pgqueuer_txn))
    else:
        print(f"pgqueuer: skipped (not installed; {INSTALL})", flush=True)
    if not have("procrastinate"):
        print(f"procrastinate: skipped (not installed; {INSTALL})", flush=True)
        return found
    # psycopg 3's rows: procrastinate's floor and, where enqueue_async takes psycopg, its rival.
    await install_procrastinate(url)
    found.append(Path(f"{PLAIN} ({PSYCOPG})", PSYCOPG, FLOOR, _psycopg_client, _psycopg_plain))
    if await psycopg_api_supported(url, updates[0]):
        name = f"{API} enqueue_async ({PSYCOPG})"
        found.append(Path(name, PSYCOPG, OURS, _psycopg_client, _psycopg_api))
    else:
        print("Python API on psycopg: not accepted by this checkout; asyncpg's stands in")
    found.append(_procrastinate_path(url))
    return found


@dataclass(frozen=True, slots=True)
class Run:
    """One path's run at one connection count: its rate and its typical transaction."""

    rate: float  # transactions/s, all connections together
    median_us: float  # median wall time of one transaction
    client_us: float  # this process's CPU per transaction
    server_us: float | None  # the backends' CPU per transaction (None: not on this machine)


Runs = dict[tuple[str, int], list[Run]]  # per (path, connections), one a round


def _server_cpu(pids: list[int]) -> float | None:
    """CPU seconds the backends with these PIDs have used, if they run on this machine.

    From /proc/PID/schedstat (nanoseconds on a CPU): /proc/PID/stat counts whole clock ticks,
    which a backend of 32 busy for a second barely reaches. A PID is only trusted when /proc
    names the process ``postgres``: with a remote server the number may belong to anything here.
    """
    total = 0
    for pid in pids:
        try:
            name = pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
            on_cpu_ns = int(pathlib.Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if name != "postgres":
            return None
        total += on_cpu_ns
    return total / 1e9


async def throughput(url: str, updates: list[Update], path: Path, connections: int,
                     seconds: float) -> Run:  # fmt: skip
    """``connections`` clients each running ``path`` back to back for ``seconds``."""
    clients = [await path.connect(url) for _ in range(connections)]
    took: list[float] = []

    async def loop(client: Client, offset: int, deadline: float) -> int:
        done = 0
        while (started := time.perf_counter()) < deadline:
            await path.txn(client, updates[(offset + done) % len(updates)])
            took.append(time.perf_counter() - started)
            done += 1
        return done

    try:
        pids = [c.backend_pid for c in clients]
        server_before = _server_cpu(pids)
        client_before = time.process_time()
        started = time.perf_counter()
        deadline = started + seconds
        counts = await asyncio.gather(*(loop(c, i * 97, deadline) for i, c in enumerate(clients)))
        rate = sum(counts) / (time.perf_counter() - started)
        done = max(1, sum(counts))
        client_us = (time.process_time() - client_before) / done * 1e6
        server_after = _server_cpu(pids)
        server_us = None
        if server_before is not None and server_after is not None:
            server_us = (server_after - server_before) / done * 1e6
        median_us = statistics.median(took) * 1e6 if took else float("nan")
        return Run(rate, median_us, client_us, server_us)
    finally:
        for client in clients:
            await client.conn.close()


async def measure(url: str, updates: list[Update], found: list[Path], seconds: float,
                  rounds: int, counts: tuple[int, ...]) -> Runs:  # fmt: skip
    """Every path at every connection count, round after round; the order rotated each round."""
    for path in found:  # warm-up: plans cached, pages in memory, tables extended
        await throughput(url, updates, path, 8, min(seconds, 1.0))
    runs: Runs = {}
    for round_ in range(rounds):
        for connections in counts:
            shift = round_ % len(found)
            for path in found[shift:] + found[:shift]:
                run = await throughput(url, updates, path, connections, seconds)
                runs.setdefault((path.name, connections), []).append(run)
        print(f"(c) round {round_ + 1} done; {load()}", flush=True)
    return runs


def _speedups(runs: Runs, top: str, bottom: str, n: int, *, by_latency: bool) -> list[float]:
    """Per round, how many times faster top ran than bottom: by rate, or by median latency."""
    pairs = zip(runs[(top, n)], runs[(bottom, n)], strict=True)
    if by_latency:
        return [b.median_us / t.median_us for t, b in pairs]
    return [t.rate / b.rate for t, b in pairs]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def print_peers(found: list[Path], runs: Runs, seconds: float, rounds: int,
                counts: tuple[int, ...]) -> None:  # fmt: skip
    """The table: rates, latencies, each against its driver's plain INSERT, the API / peer."""
    plain = {p.driver: p.name for p in found if p.role == FLOOR}
    api = {p.driver: p.name for p in found if p.role == OURS}
    rows: list[list[object]] = []
    for n in counts:
        for path in found:
            vs_plain = _speedups(runs, path.name, plain[path.driver], n, by_latency=False)
            by_rate: str | None = None
            by_latency: str | None = None
            verdict = ""
            if path.role == PEER:
                mine = api.get(path.driver, api[ASYNCPG])
                rates = _speedups(runs, mine, path.name, n, by_latency=False)
                latencies = _speedups(runs, mine, path.name, n, by_latency=True)
                by_rate, by_latency = _spread(rates), _spread(latencies)
                # One connection is judged on median latency (see the module docstring).
                ratio = statistics.median(latencies if n == 1 else rates)
                wanted = target(n)
                label = "" if path.driver in api else " (asyncpg API)"
                verdict = f">= {wanted}: {'met' if ratio >= wanted else 'MISSED'}{label}"
            mine_runs = runs[(path.name, n)]
            rate = statistics.median(r.rate for r in mine_runs)
            median_us = statistics.median(r.median_us for r in mine_runs)
            client_us = statistics.median(r.client_us for r in mine_runs)
            server = [r.server_us for r in mine_runs if r.server_us is not None]
            server_us = statistics.median(server) if server else None
            rows.append([n, path.name, path.driver, rate, median_us, client_us, server_us,
                         statistics.median(vs_plain), by_rate, by_latency, verdict])  # fmt: skip
    print_table(
        f"(c) Enqueue against peers in the application's transaction, {seconds:g} s each, "
        f"medians of {rounds} interleaved rounds",
        ["connections", "path", "driver", "txn/s", "median µs/txn", "client CPU µs/txn",
         "server CPU µs/txn", "txn/s vs plain", "API / peer, txn/s (min-max)",
         "API / peer, median µs (min-max)", "target"],
        rows,
    )  # fmt: skip


async def peers_table(url: str, updates: list[Update], seconds: float, rounds: int,
                      counts: tuple[int, ...] = CONNECTIONS) -> None:  # fmt: skip
    """(c): every path at 1, 8 and 32 connections in interleaved rounds, and the table."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(APP_TABLES)  # IF NOT EXISTS: enqueue_bench may have made them already
    finally:
        await conn.close()
    found = await paths(url, updates)
    runs = await measure(url, updates, found, seconds, rounds, counts)
    print_peers(found, runs, seconds, rounds, counts)


def main() -> None:
    """Parse the options and print table (c), measured on a throwaway database."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument(
        "--connections", type=int, nargs="+", default=list(CONNECTIONS),
        help="connection counts to run (default: 1 8 32)",
    )  # fmt: skip
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.seconds, args.rounds = 0.3, 1
    # procrastinate warns when its App is built in the __main__ module, as it is when this
    # module runs as a script; the bench never runs a procrastinate worker, so the warning is noise.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    updates = sample_updates(500)
    with bench_database(args.database_url) as url:
        counts = tuple(args.connections)
        run_async(lambda: peers_table(url, updates, args.seconds, args.rounds, counts))


if __name__ == "__main__":
    main()

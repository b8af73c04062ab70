"""The console's server time with a big table and many open tabs.

    python -m bench.console_bench [--rows 1000000] [--dead 200000] [--tabs 50] [--seconds 30]
                                  [--refresh 5] [--database-url URL] [--tiny]

Fills outbox.messages (``--dead`` dead letters over the last day, the rest acknowledged over the
last day, a few hundred pending), starts the console's application in this process on a loopback
port, signs one browser session in and opens ``--tabs`` tabs. Each tab, staggered, asks every
``--refresh`` seconds for the overview (what its script does) and for a page of dead letters (the
first page, a status filter, or a page far down the keyset), as an operator clicking around would.
Server time is measured inside the application (a middleware around every handler), so the
client's own cost is not counted. Printed per page: requests, p50, p95, max.

Then the database's side: how many times the overview's aggregate was loaded, and transactions
per second, for one tab and for ``--tabs`` tabs. The aggregate is reused for 5 s, so its load
does not grow with the number of tabs; it is loaded once before the console listens, and
reloaded in the background while tabs are served the previous one. Target: p95 <= 100 ms for
each page.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import aiohttp
import asyncpg
from aiohttp import web

from bench.harness import add_database_option, bench_database, print_table, run_async
from outbox_worker.console.server import make_app
from outbox_worker.console.settings import ConsoleSettings
from outbox_worker.console.state import OVERVIEW
from outbox_worker.console.tokens import Role, TokenBook, new_token, parse_line
from outbox_worker.store.connection import operator_pool

TARGET_P95_MS = 100.0

FILL = """
INSERT INTO outbox.messages (payload, state, attempts, dedup_key, created_at, dead_at,
    acknowledged_at, last_status, last_error)
SELECT jsonb_build_object('timestamp', 1700000000000,
           'registration', jsonb_build_object('success', g % 2 = 0, 'username', 'user' || g),
           'customer', jsonb_build_object('customerId', 'c-' || g, 'email', 'u' || g || '@x.test')),
       CASE WHEN g <= $2 THEN 'dead' WHEN g <= $1 - $3 THEN 'acknowledged' ELSE 'pending' END,
       CASE WHEN g <= $2 THEN 25 ELSE 1 END,
       'signup-' || g,
       now() - make_interval(secs => (g::bigint * 7919) % 86400 + 60),
       CASE WHEN g <= $2 THEN now() - make_interval(secs => (g::bigint * 7919) % 86400) END,
       CASE WHEN g > $2 AND g <= $1 - $3
            THEN now() - make_interval(secs => (g::bigint * 104729) % 86400) END,
       CASE WHEN g <= $2 THEN (ARRAY[400, 422, 503, 500])[1 + g % 4] END,
       CASE WHEN g <= $2 THEN (ARRAY['Invalid Request: bad email', 'unprocessable',
            'HTTP 503: Service Unavailable', 'HTTP 500'])[1 + g % 4] END
FROM generate_series(1, $1::int) AS g
"""


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))]


def timing(times: dict[str, list[float]]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware that records each handler's time (ms) under its page's name."""

    @web.middleware
    async def timed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            page = "overview" if request.path == "/" else request.path
            if request.query.get("after_id"):
                page += " (deep page)"
            elif request.query.get("status"):
                page += " (status filter)"
            times[page].append((time.perf_counter() - started) * 1000)

    return timed


async def fill(url: str, rows: int, dead: int) -> None:
    """Insert the rows in one statement, then VACUUM ANALYZE (as autovacuum would by then)."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute(FILL, rows, dead, min(500, rows // 10))
        await conn.execute("VACUUM ANALYZE outbox.messages")
        print(f"inserted {rows:,} rows ({dead:,} dead) in {time.perf_counter() - started:.0f}s")
    finally:
        await conn.close()


async def sign_in(http: aiohttp.ClientSession, base: str, token: str) -> None:
    """One browser session: the form's CSRF token, then the token."""
    async with http.get(base + "/signin") as form:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text())
    assert csrf is not None
    async with http.post(base + "/signin", data={"csrf": csrf.group(1), "token": token}) as done:
        assert done.status == 200, done.status


async def tab(
    http: aiohttp.ClientSession, base: str, paths: list[str], refresh_s: float, until: float
) -> None:
    """One open tab: an overview refresh (and one of ``paths``, if any) every ``refresh_s``."""
    await asyncio.sleep(random.uniform(0, refresh_s))  # tabs opened at different moments
    while time.monotonic() < until:
        for path in ["/", *([random.choice(paths)] if paths else [])]:
            async with http.get(base + path) as answer:
                assert answer.status == 200, (path, answer.status)
                await answer.read()
        await asyncio.sleep(refresh_s)


async def browse(base: str, token: str, tabs: int, paths: list[str], refresh_s: float,
                 seconds: float) -> None:  # fmt: skip
    """Sign one browser session in and keep ``tabs`` tabs refreshing for ``seconds``."""
    jar = aiohttp.CookieJar(unsafe=True)
    connector = aiohttp.TCPConnector(limit=tabs * 2)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as http:
        await sign_in(http, base, token)
        until = time.monotonic() + seconds
        await asyncio.gather(*(tab(http, base, paths, refresh_s, until) for _ in range(tabs)))


async def warm_up(base: str, token: str, paths: list[str]) -> None:
    """Each page once, untimed: the first plan of each statement and a cold cache are not what
    an open tab sees."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        await sign_in(http, base, token)
        for path in ["/", *paths]:
            async with http.get(base + path) as answer:
                await answer.read()


def browser_process(*args: object) -> None:
    """The tabs in a process of their own, so the server's time is its own (not the client's)."""
    asyncio.run(browse(*args))  # type: ignore[arg-type]


async def deep_cursor(url: str, dead: int) -> str:
    """A keyset link far down the list: after the row at about 80% of the dead letters."""
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT dead_at, id FROM outbox.messages WHERE state = 'dead' "
            "ORDER BY dead_at DESC, id DESC OFFSET $1 LIMIT 1",
            int(dead * 0.8),
        )
        assert row is not None
        return f"/dead?after_at={row['dead_at'].isoformat()}&after_id={row['id']}".replace(
            "+", "%2B"
        )
    finally:
        await conn.close()


async def transactions(url: str) -> int:
    """Committed transactions of this database so far (pg_stat_database)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        return int(
            await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        )
    finally:
        await conn.close()


async def scenario(
    url: str, tabs: int, seconds: float, refresh_s: float, paths: list[str]
) -> tuple[dict[str, list[float]], int, float]:
    """Serve the console to ``tabs`` tabs for ``seconds``; times, aggregate loads, tx/s."""
    times: dict[str, list[float]] = defaultdict(list)
    token, line = new_token("bench", Role.ADMIN)
    settings = ConsoleSettings(database_url=url, port=0)
    async with operator_pool(url, application_name="console bench", max_size=4) as pool:
        app = make_app(settings, TokenBook([parse_line(line, "bench")]), pool)
        app.middlewares.insert(0, timing(times))
        await app[OVERVIEW].get()  # as `outbox-worker console` does before it listens
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        await warm_up(f"http://127.0.0.1:{port}", token, paths)
        times.clear()
        loads_before = app[OVERVIEW].loads
        tx_before, started = await transactions(url), time.monotonic()
        client = multiprocessing.get_context("spawn").Process(
            target=browser_process,
            args=(f"http://127.0.0.1:{port}", token, tabs, paths, refresh_s, seconds),
        )
        client.start()
        await asyncio.to_thread(client.join)
        assert client.exitcode == 0, f"the browsing process failed ({client.exitcode})"
        tx_rate = (await transactions(url) - tx_before) / (time.monotonic() - started)
        loads = app[OVERVIEW].loads - loads_before
        await runner.cleanup()
    times.pop("/signin", None)
    return times, loads, tx_rate


async def bench(url: str, args: argparse.Namespace) -> None:
    """Fill; time the pages with 1 and ``--tabs`` tabs; then the overview's database load."""
    await fill(url, args.rows, args.dead)
    paths = ["/dead", "/dead?status=503", await deep_cursor(url, args.dead)]
    rows, load_rows = [], []
    for tabs in sorted({1, args.tabs}):
        times, _, _ = await scenario(url, tabs, args.seconds, args.refresh, paths)
        for page, values in sorted(times.items()):
            p95 = percentile(values, 95)
            verdict = "ok" if p95 <= TARGET_P95_MS else "MISSED"
            rows.append([tabs, page, len(values), statistics.median(values), p95,
                         max(values), verdict])  # fmt: skip
    for tabs in sorted({1, args.tabs}):
        times, loads, tx_rate = await scenario(url, tabs, args.seconds, args.refresh, [])
        requests = len(times.get("overview", []))
        load_rows.append([tabs, requests, loads, loads / args.seconds, tx_rate])
    print_table(
        f"Console server time (ms), {args.rows:,} rows, {args.dead:,} dead, each tab asks for "
        f"the overview and a dead-letter page every {args.refresh:g}s, {args.seconds:g}s; "
        f"target p95 <= {TARGET_P95_MS:g} ms",
        ["tabs", "page", "requests", "p50", "p95", "max", "p95 target"],
        rows,
    )
    print_table(
        "Database load of the overview alone: aggregate loads and transactions per second",
        ["tabs", "overview requests", "aggregate loads", "loads/s", "transactions/s"],
        load_rows,
    )


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dead", type=int, default=200_000)
    parser.add_argument("--tabs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--refresh", type=float, default=5.0, help="seconds between refreshes")
    parser.add_argument("--tiny", action="store_true", help="a few seconds on a small table")
    add_database_option(parser)
    args = parser.parse_args()
    if args.tiny:
        args = replace_args(args, rows=10_000, dead=2_000, tabs=5, seconds=3.0, refresh=1.0)
    with bench_database(args.database_url) as url:
        run_async(lambda: bench(url, args))


def replace_args(args: argparse.Namespace, **values: object) -> argparse.Namespace:
    """``args`` with some values replaced."""
    return argparse.Namespace(**(vars(args) | values))


if __name__ == "__main__":
    main()

"""Delivery throughput and latency: the worker process against the reference pipeline.

    python -m bench.delivery_bench [--rows 20000] [--latency-seconds 10] [--repeat 1]

(1) Drain: ``--rows`` pre-filled rows, the stand-in in a process of its own; the reference
pipeline (bench/reference_pipeline.py, as a process) and then ``python -m outbox_worker run``
(one process, then two) each drain the same rows, reset to pending in between. Measured the same
way for all: from process start to the last ``acknowledged_at`` ("wall", includes Python start-up,
about 0.5-1 s), and from the first to the last ``acknowledged_at`` ("steady"). CPU per delivery is
the delivering processes' user+system CPU between the first ack and the end, over the deliveries
in that window (from /proc), with the same for the stand-in and for the whole machine (all
cores: pipeline, stand-in, PostgreSQL, this script). Target: worker / reference >= 0.8 (steady
rates).

(2) Latency: one worker; the bench enqueues one update per transaction at a steady ``--rate``
(paced by the clock) for ``--latency-seconds``; enqueue-to-ack latency is ``acknowledged_at -
created_at`` per row, in SQL (target p99 < 50 ms; poll-only: poll interval + 50 ms). Then the
worker is left idle: its load on the database over the second ``--idle-seconds`` (10) of it
(transactions/s on the bench database from pg_stat_database, each statement outside a
transaction counting one), and how long a single update enqueued after that is to acknowledged
(target 1 s; poll-only: the poll interval). One row per way of waking the worker: the shipped
throttled NOTIFY (at most one notifying transaction per 10 ms) with adaptive polling, a NOTIFY in
every enqueueing transaction (revision 0004), and no NOTIFY at all (poll-only, adaptive polling).

(4) Start-up: from starting ``python -m outbox_worker run`` to its first claim (``claimed_at``
of the one row waiting), median of ``--startup-runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import asyncpg

from bench.harness import (
    API_KEY,
    Standin,
    add_database_option,
    bench_database,
    cpu_seconds,
    load,
    machine_cpu_seconds,
    print_table,
    process_logs,
    python_command,
    run_async,
    sample_bodies,
    sample_updates,
    standin_control,
    standin_process,
    stop_process,
    tail,
)
from outbox_worker import enqueue_async

FILL = "SELECT count(outbox.enqueue(body::jsonb)) FROM unnest($1::text[]) AS t(body)"
RESET = """
UPDATE outbox.messages SET state = 'pending', attempts = 0, acknowledged_at = NULL,
    lease_token = NULL, claimed_at = NULL, available_at = now(), last_status = NULL,
    last_error = NULL, last_response = NULL, history = '[]'::jsonb
"""
PENDING = "SELECT count(*) FROM outbox.messages WHERE state = 'pending'"
DRAIN_RESULT = """
SELECT count(*) FILTER (WHERE state = 'acknowledged') AS acked,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       extract(epoch FROM min(acknowledged_at))::float8 AS first_ack,
       extract(epoch FROM max(acknowledged_at))::float8 AS last_ack
FROM outbox.messages
"""
LATENCY = """
SELECT count(*) AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
       max(ms) AS max
FROM (SELECT (extract(epoch FROM acknowledged_at - created_at) * 1000)::float8 AS ms
      FROM outbox.messages WHERE id > $1 AND state = 'acknowledged') AS t
"""


XACTS = """
SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()
"""
FIRST_CLAIM = """
SELECT extract(epoch FROM min(claimed_at))::float8 AS claimed,
       extract(epoch FROM min(acknowledged_at))::float8 AS acked
FROM outbox.messages
"""
ACK_MS = """
SELECT (extract(epoch FROM acknowledged_at - created_at) * 1000)::float8
FROM outbox.messages WHERE id = $1 AND state = 'acknowledged'
"""


@dataclass(frozen=True, slots=True)
class Drain:
    """One drain run, measured from outside the delivering processes."""

    name: str
    processes: int
    rows: int
    wall_s: float
    steady_s: float
    cpu_us: float | None  # the delivering processes' CPU per delivery (steady window)
    standin_cpu_us: float | None
    machine_cpu_us: float | None  # every core's busy time: pipeline, stand-in, PostgreSQL, bench
    received: int
    dead: int

    @property
    def wall_rate(self) -> float:
        return self.rows / self.wall_s

    @property
    def steady_rate(self) -> float:
        return self.rows / self.steady_s if self.steady_s > 0 else float("nan")


@dataclass(frozen=True, slots=True)
class Latency:
    name: str
    sent: int
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    target_ms: float
    idle_qps: float  # the idle worker's transactions/s on the database
    after_idle_ms: float  # a single update enqueued after the idle spell, to acknowledged
    after_idle_target_ms: float


class Bench:
    """The shared pieces of one run: database, stand-in, log directory."""

    def __init__(self, database_url: str, standin: Standin, logs: Path) -> None:
        self.database_url = database_url
        self.standin = standin
        self.endpoint_url = standin.url
        self.logs = logs

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OUTBOX_DATABASE_URL=self.database_url,
            OUTBOX_ENDPOINT_URL=self.endpoint_url,
            OUTBOX_API_KEY=API_KEY,
            **extra,
        )
        return env

    @contextmanager
    def processes(
        self,
        name: str,
        commands: list[list[str]],
        env: Mapping[str, str],
        *,
        exit_by_itself: bool,
        wait_s: float = 10,
        stop_s: float = 15,
    ) -> Iterator[list[subprocess.Popen[bytes]]]:
        """Start processes (logs in the log dir); at the end wait for them (up to ``wait_s``) if
        they exit by themselves, else SIGTERM them (SIGKILL after ``stop_s``); check they exit 0."""
        procs: list[subprocess.Popen[bytes]] = []
        logs = []
        try:
            for i, command in enumerate(commands):
                log = (self.logs / f"{name}-{i}.log").open("wb")
                logs.append(log)
                procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=log))
            yield procs
        finally:
            if exit_by_itself:
                for proc in procs:
                    _wait_quietly(proc, wait_s)
            codes = [stop_process(proc, stop_s) for proc in procs]
            for log in logs:
                log.close()
        if any(codes):
            raise RuntimeError(f"{name} exited {codes}:\n{tail(logs[0].name)}")


def _wait_quietly(proc: subprocess.Popen[bytes], timeout: float) -> None:
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)


async def fill(url: str, rows: int) -> None:
    """Enqueue ``rows`` realistic updates through outbox.enqueue (one statement)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.fetchval(FILL, sample_bodies(rows))
        await conn.execute("VACUUM ANALYZE outbox.messages")
    finally:
        await conn.close()


async def reset(url: str) -> None:
    """Make every row pending and due again, as if freshly enqueued."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(RESET)
        await conn.execute("VACUUM ANALYZE outbox.messages")
    finally:
        await conn.close()


async def drain(
    bench: Bench,
    name: str,
    commands: list[list[str]],
    rows: int,
    *,
    exit_by_itself: bool = False,
    env: Mapping[str, str] | None = None,
    deadline_s: float | None = None,
    wait_s: float = 10,
    stop_s: float = 15,
) -> Drain:
    """Start the processes on reset rows; wait for every row to be settled; measure.

    ``deadline_s`` (default 60 s + 5 ms a row) bounds the drain; ``wait_s`` and ``stop_s`` are
    passed to ``Bench.processes``.
    """
    await reset(bench.database_url)
    standin_control(bench.endpoint_url, "reset", post=True)
    conn = await asyncpg.connect(bench.database_url)
    try:
        started = time.time()
        env = env or bench.worker_env()
        with bench.processes(
            name, commands, env, exit_by_itself=exit_by_itself, wait_s=wait_s, stop_s=stop_s
        ) as procs:
            first: _CpuSample | None = None
            deadline = time.monotonic() + (60 + rows / 200 if deadline_s is None else deadline_s)
            while (pending := await conn.fetchval(PENDING)) > 0:
                if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
                    raise RuntimeError(f"{name}: {pending} rows still pending; see {bench.logs}")
                if first is None and pending < rows:
                    first = _CpuSample.take(procs, bench.standin.pid, rows - pending)
                await asyncio.sleep(0.05)
            last = _CpuSample.take(procs, bench.standin.pid, rows)
        result = await conn.fetchrow(DRAIN_RESULT)
        assert result is not None
    finally:
        await conn.close()
    per_delivery = last.per_delivery_since(first)
    return Drain(
        name=name,
        processes=len(commands),
        rows=rows,
        wall_s=result["last_ack"] - started,
        steady_s=result["last_ack"] - result["first_ack"],
        cpu_us=per_delivery[0],
        standin_cpu_us=per_delivery[1],
        machine_cpu_us=per_delivery[2],
        received=standin_control(bench.endpoint_url, "received")["total"],
        dead=result["dead"],
    )


@dataclass(frozen=True, slots=True)
class _CpuSample:
    """CPU seconds used so far by the delivering processes, the stand-in and the machine."""

    delivered: int
    seconds: tuple[float | None, float | None, float | None]

    @classmethod
    def take(cls, procs: list[subprocess.Popen[bytes]], standin_pid: int, delivered: int) -> Self:
        pipeline = [cpu_seconds(p.pid) for p in procs]
        total = None if None in pipeline else sum(s for s in pipeline if s is not None)
        return cls(delivered, (total, cpu_seconds(standin_pid), machine_cpu_seconds()))

    def per_delivery_since(self, first: _CpuSample | None) -> list[float | None]:
        """µs of CPU per delivery between two samples, for each of the three."""
        if first is None or self.delivered <= first.delivered:
            return [None, None, None]
        count = self.delivered - first.delivered
        return [
            None if a is None or b is None else (b - a) / count * 1e6
            for a, b in zip(first.seconds, self.seconds, strict=True)
        ]


async def latency(
    bench: Bench,
    name: str,
    *,
    rate: float,
    seconds: float,
    idle_seconds: float,
    targets_ms: tuple[float, float],
    env: dict[str, str],
    notify_each: bool = False,
) -> Latency:
    """Enqueue at a steady rate while one worker delivers; percentiles of enqueue-to-ack; then
    the idle worker's load and a single update after the idle spell."""
    conn = await asyncpg.connect(bench.database_url)
    try:
        await conn.execute("TRUNCATE outbox.messages")
        worker = [python_command("-m", "outbox_worker", "run")]
        with bench.processes(name, worker, env, exit_by_itself=False):
            # Warm-up: the worker has started, passed its probe and opened full concurrency.
            await _enqueue_paced(conn, count=10, rate=50, notify_each=notify_each)
            await _wait_settled(conn, name, within_s=30)
            since_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox.messages")
            started = time.perf_counter()
            count = max(1, round(rate * seconds))
            sent = await _enqueue_paced(conn, count=count, rate=rate, notify_each=notify_each)
            achieved = sent / (time.perf_counter() - started)
            await _wait_settled(conn, name, within_s=30)
            row = await conn.fetchrow(LATENCY, since_id)
            idle_qps = await _idle_load(conn, idle_seconds)
            after_idle_ms = await _single_after_idle(conn, notify_each=notify_each)
        assert row is not None
    finally:
        await conn.close()
    return Latency(name, row["n"], achieved, row["p50"], row["p99"], row["max"], targets_ms[0],
                   idle_qps, after_idle_ms, targets_ms[1])  # fmt: skip


async def _idle_load(conn: asyncpg.Connection, seconds: float) -> float:
    """Transactions/s others ran on this database in the second ``seconds`` of idleness."""
    # A backend that goes idle reports what it has not reported yet only after up to 10 s
    # (PGSTAT_IDLE_INTERVAL): the busy phase's last second would land in the window. So wait
    # that out first; then an idle worker, whose statements are seconds apart, is counted as
    # it goes (a backend reports at once when a second has passed since its last report).
    await asyncio.sleep(max(seconds, 10.5))
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    before = await conn.fetchval(XACTS)
    await asyncio.sleep(seconds)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    after = await conn.fetchval(XACTS)
    return max(0, int(after) - int(before) - 2) / seconds  # minus this bench's own two


async def _single_after_idle(conn: asyncpg.Connection, *, notify_each: bool) -> float:
    """Enqueue one update; ms from its creation to its acknowledgement."""
    message_id = await _enqueue_one(conn, sample_updates(1)[0], notify_each=notify_each)
    deadline = time.monotonic() + 30
    while (ms := await conn.fetchval(ACK_MS, message_id)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the update after the idle spell was not acknowledged in 30 s")
        await asyncio.sleep(0.005)
    return float(ms)


async def _enqueue_paced(
    conn: asyncpg.Connection, *, count: int, rate: float, notify_each: bool = False
) -> int:
    """One enqueue per transaction at ``rate``/s, each at its slot on the clock (no bursts)."""
    updates = sample_updates(min(count, 500))
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await _enqueue_one(conn, updates[i % len(updates)], notify_each=notify_each)
    return count


async def _enqueue_one(conn: asyncpg.Connection, update: Any, *, notify_each: bool) -> int:
    """One enqueue in its own transaction; with ``notify_each`` it also NOTIFYs, as 0004 did."""
    async with conn.transaction():
        message_id = int(await enqueue_async(conn, update))
        if notify_each:
            await conn.execute("SELECT pg_notify('outbox', '')")
    return message_id


async def _wait_settled(conn: asyncpg.Connection, name: str, *, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while await conn.fetchval(PENDING) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: rows still pending after {within_s} s")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, bench: Bench) -> None:
    if not args.only_latency:
        await drains(args, bench)
    await startups(bench, runs=args.startup_runs)
    await latencies(args, bench)


async def startups(bench: Bench, *, runs: int) -> None:
    """(4) Start-up: process start to the first claim, with one row waiting; median of runs."""
    conn = await asyncpg.connect(bench.database_url)
    claims, acks = [], []
    try:
        for i in range(runs):
            await conn.execute("TRUNCATE outbox.messages")
            async with conn.transaction():
                await enqueue_async(conn, sample_updates(1)[0])
            started = time.time()
            worker = [python_command("-m", "outbox_worker", "run")]
            with bench.processes(f"startup-{i}", worker, bench.worker_env(), exit_by_itself=False):
                await _wait_settled(conn, "start-up", within_s=30)
            row = await conn.fetchrow(FIRST_CLAIM)
            assert row is not None
            claims.append((row["claimed"] - started) * 1000)
            acks.append((row["acked"] - started) * 1000)
    finally:
        await conn.close()
    print_table(
        f"Start-up: `outbox-worker run` process start to its first claim, one row waiting "
        f"(median of {runs}; {load()})",
        ["runs", "start to first claim ms", "min", "max", "start to acknowledged ms"],
        [[runs, statistics.median(claims), min(claims), max(claims), statistics.median(acks)]],
    )


async def drains(args: argparse.Namespace, bench: Bench) -> None:
    """(1) and (3): the drain rounds."""
    await fill(bench.database_url, args.rows)
    worker = python_command("-m", "outbox_worker", "run")
    reference = python_command(
        "-m", "bench.reference_pipeline", "--database-url", bench.database_url,
        "--endpoint-url", bench.endpoint_url, "--api-key", API_KEY, "--total", str(args.rows),
    )  # fmt: skip
    drains: list[Drain] = []
    for _ in range(args.repeat):
        drains.append(await drain(bench, "reference", [reference], args.rows, exit_by_itself=True))
        drains.append(await drain(bench, "worker x1", [worker], args.rows))
        drains.append(await drain(bench, "worker x2", [worker, worker], args.rows))
    print_drains(drains)


async def latencies(args: argparse.Namespace, bench: Bench) -> None:
    """(2): latency at a steady rate, then the idle worker, for each way of waking it."""
    poll_s = args.poll_interval
    modes = {
        "throttled NOTIFY + adaptive poll (shipped)": ({}, False, (50, 1000)),
        "NOTIFY every enqueue (revision 0004)": ({}, True, (50, 1000)),
        f"no NOTIFY, adaptive poll up to {poll_s:g} s": (
            {"OUTBOX_POLL_ONLY": "true", "OUTBOX_POLL_INTERVAL": f"{poll_s}s"},
            False,
            (poll_s * 1000 + 50, poll_s * 1000 + 50),
        ),
    }
    latencies = []
    for name, (extra, notify_each, targets) in modes.items():
        latencies.append(
            await latency(bench, name, rate=args.rate, seconds=args.latency_seconds,
                          idle_seconds=args.idle_seconds, targets_ms=targets,
                          env=bench.worker_env(**extra), notify_each=notify_each)
        )  # fmt: skip
        print(f"latency: {name} done; {load()}", flush=True)
    print_latencies(latencies, args.idle_seconds)


def print_drains(drains: list[Drain]) -> None:
    rows = [
        [d.name, d.processes, d.rows, d.received, d.dead, d.wall_s, d.wall_rate, d.steady_s,
         d.steady_rate, d.cpu_us, d.standin_cpu_us, d.machine_cpu_us]
        for d in drains
    ]  # fmt: skip
    print_table(
        "Drain (stand-in in its own process)",
        ["pipeline", "procs", "rows", "received", "dead", "wall s", "wall /s", "steady s",
         "steady /s", "CPU µs/deliv.", "stand-in µs", "machine µs"],
        rows,
    )  # fmt: skip
    # Other work on the same cores moves every rate; rounds run back to back, so the per-round
    # ratio and the CPU each pipeline spends per delivery are the steadier figures.
    refs = [d for d in drains if d.name == "reference"]
    summary = []
    for name in ("worker x1", "worker x2"):
        runs = [d for d in drains if d.name == name]
        round_ratios = [w.steady_rate / r.steady_rate for w, r in zip(runs, refs, strict=True)]
        cpu_ratios = [
            r.cpu_us / w.cpu_us if r.cpu_us and w.cpu_us else float("nan")
            for w, r in zip(runs, refs, strict=True)
        ]
        ratio = statistics.median(round_ratios)
        summary.append([
            name, ratio, min(round_ratios), max(round_ratios),
            max(d.steady_rate for d in runs) / max(d.steady_rate for d in refs),
            statistics.median(cpu_ratios), ">= 0.8", "met" if ratio >= 0.8 else "MISSED",
        ])  # fmt: skip
    print_table(
        f"Worker / reference, steady rates ({len(refs)} rounds)",
        ["pipeline", "median ratio", "min", "max", "best / best", "ref CPU / worker CPU",
         "target", "result"],
        summary,
    )  # fmt: skip


def print_latencies(latencies: list[Latency], idle_seconds: float) -> None:
    print_table(
        f"Enqueue-to-acknowledged latency (one worker, steady enqueue rate); its load while idle "
        f"(the second {idle_seconds:g} s of idleness) and a single update after that",
        ["mode", "updates", "rate /s", "p50 ms", "p99 ms", "max ms", "target p99 ms", "result",
         "idle worker txn/s", "single after idle ms", "target ms", "result"],
        [
            [x.name, x.sent, x.rate, x.p50_ms, x.p99_ms, x.max_ms, x.target_ms,
             "met" if x.p99_ms < x.target_ms else "MISSED", x.idle_qps, x.after_idle_ms,
             x.after_idle_target_ms,
             "met" if x.after_idle_ms < x.after_idle_target_ms else "MISSED"]
            for x in latencies
        ],
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=20_000, help="rows each drain delivers")
    parser.add_argument("--repeat", type=int, default=1, help="drain rounds (best one compared)")
    parser.add_argument("--rate", type=float, default=200, help="enqueues/s in the latency runs")
    parser.add_argument("--latency-seconds", type=float, default=10, help="length of each")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="poll-only interval s")
    parser.add_argument("--idle-seconds", type=float, default=10, help="idle spell after each")
    parser.add_argument("--only-latency", action="store_true", help="skip the drains")
    parser.add_argument("--startup-runs", type=int, default=5, help="start-up measurements")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.repeat, args.latency_seconds, args.rate = 300, 1, 1.0, 50
        args.poll_interval, args.idle_seconds, args.startup_runs = 0.5, 1.0, 1
    with (
        process_logs() as logs,
        bench_database(args.database_url) as url,
        standin_process() as standin,
    ):
        run_async(lambda: run(args, Bench(url, standin, logs)))


if __name__ == "__main__":
    main()

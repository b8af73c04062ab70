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
created_at`` per row, in SQL. With NOTIFY (target p99 < 50 ms) and poll-only with
``--poll-interval`` (target p99 < poll interval + 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import asyncpg

from bench.harness import (
    API_KEY,
    Standin,
    add_database_option,
    bench_database,
    cpu_seconds,
    machine_cpu_seconds,
    print_table,
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
        self, name: str, commands: list[list[str]], env: Mapping[str, str], *, exit_by_itself: bool
    ) -> Iterator[list[subprocess.Popen[bytes]]]:
        """Start processes (logs in the log dir); at the end wait for them if they exit by
        themselves, else SIGTERM them; check they exit 0."""
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
                    _wait_quietly(proc, 10)
            codes = [stop_process(proc) for proc in procs]
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
    bench: Bench, name: str, commands: list[list[str]], rows: int, *, exit_by_itself: bool = False
) -> Drain:
    """Start the processes on reset rows; wait for every row to be settled; measure."""
    await reset(bench.database_url)
    standin_control(bench.endpoint_url, "reset", post=True)
    conn = await asyncpg.connect(bench.database_url)
    try:
        started = time.time()
        env = bench.worker_env()
        with bench.processes(name, commands, env, exit_by_itself=exit_by_itself) as procs:
            first: _CpuSample | None = None
            deadline = time.monotonic() + 60 + rows / 200
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
    bench: Bench, name: str, *, rate: float, seconds: float, target_ms: float, env: dict[str, str]
) -> Latency:
    """Enqueue at a steady rate while one worker delivers; percentiles of enqueue-to-ack."""
    conn = await asyncpg.connect(bench.database_url)
    try:
        await conn.execute("TRUNCATE outbox.messages")
        worker = [python_command("-m", "outbox_worker", "run")]
        with bench.processes(name, worker, env, exit_by_itself=False):
            # Warm-up: the worker has started, passed its probe and opened full concurrency.
            await _enqueue_paced(conn, count=10, rate=50)
            await _wait_settled(conn, name, within_s=30)
            since_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox.messages")
            started = time.perf_counter()
            sent = await _enqueue_paced(conn, count=max(1, round(rate * seconds)), rate=rate)
            achieved = sent / (time.perf_counter() - started)
            await _wait_settled(conn, name, within_s=30)
        row = await conn.fetchrow(LATENCY, since_id)
        assert row is not None
    finally:
        await conn.close()
    return Latency(name, row["n"], achieved, row["p50"], row["p99"], row["max"], target_ms)


async def _enqueue_paced(conn: asyncpg.Connection, *, count: int, rate: float) -> int:
    """One enqueue per transaction at ``rate``/s, each at its slot on the clock (no bursts)."""
    updates = sample_updates(min(count, 500))
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        async with conn.transaction():
            await enqueue_async(conn, updates[i % len(updates)])
    return count


async def _wait_settled(conn: asyncpg.Connection, name: str, *, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while await conn.fetchval(PENDING) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: rows still pending after {within_s} s")
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace, bench: Bench) -> None:
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

    poll_s = args.poll_interval
    latencies = [
        await latency(bench, "NOTIFY", rate=args.rate, seconds=args.latency_seconds,
                      target_ms=50, env=bench.worker_env()),
        await latency(bench, f"poll-only, poll {poll_s:g} s", rate=args.rate,
                      seconds=args.latency_seconds, target_ms=poll_s * 1000 + 50,
                      env=bench.worker_env(OUTBOX_POLL_ONLY="true",
                                           OUTBOX_POLL_INTERVAL=f"{poll_s}s")),
    ]  # fmt: skip
    print_latencies(latencies)


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


def print_latencies(latencies: list[Latency]) -> None:
    print_table(
        "Enqueue-to-acknowledged latency (one worker, steady enqueue rate)",
        ["mode", "updates", "rate /s", "p50 ms", "p99 ms", "max ms", "target p99 ms", "result"],
        [
            [x.name, x.sent, x.rate, x.p50_ms, x.p99_ms, x.max_ms, x.target_ms,
             "met" if x.p99_ms < x.target_ms else "MISSED"]
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
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.repeat, args.latency_seconds, args.rate = 300, 1, 1.0, 50
        args.poll_interval = 0.5
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

"""Scaling out against a realistic endpoint: deliveries/s by concurrency and processes; a backlog
drained under Ravelin's documented rate limit.

    python -m bench.scale_bench [--rows 5000] [--limited-rows 1000] [--latency 0.03-0.12]

(1) Throughput: ``--rows`` pre-filled rows drained by ``outbox-worker run`` with
OUTBOX_CONCURRENCY 64 and 256, in 1 and 2 processes, against the stand-in answering each request
after a uniform draw from ``--latency`` seconds (as a remote API answers), in ``--repeat``
interleaved rounds. With latency L (mean) and concurrency C, one process can at best deliver C/L
a second; the table shows how close it gets and what a second process adds.

(2) A backlog under the fleet rate limit: Ravelin documents 3,000 requests/min (50/s) for live
keys, so OUTBOX_RATE_LIMIT=50 on every worker. ``--limited-rows`` are drained with 1 and 2
processes; the measured rate gives the time a backlog of 100,000 takes (at exactly 50/s: 2,000 s,
33 min 20 s), which is what an operator sizes for: more workers do not drain it faster.
"""

from __future__ import annotations

import argparse

import asyncpg

from bench.delivery_bench import Bench, Drain, drain, fill
from bench.harness import (
    add_database_option,
    bench_database,
    load,
    print_table,
    process_logs,
    python_command,
    run_async,
    standin_process,
)

BACKLOG = 100_000
RAVELIN_PER_MINUTE = 3_000


async def run(args: argparse.Namespace, bench: Bench) -> None:
    worker = python_command("-m", "outbox_worker", "run")
    await fill(bench.database_url, args.rows)
    rows: list[list[object]] = []
    for round_ in range(args.repeat):
        for concurrency in (64, 256):
            for processes in (1, 2):
                env = bench.worker_env(OUTBOX_CONCURRENCY=str(concurrency))
                name = f"c{concurrency} x{processes}"
                result = await drain(bench, name, [worker] * processes, args.rows, env=env)
                rows.append([round_ + 1, concurrency, processes, *_rates(result)])
        print(f"(1) round {round_ + 1} done; {load()}", flush=True)
    print_table(
        f"(1) Drain of {args.rows:,} rows, stand-in latency uniform in {args.latency} s",
        ["round", "concurrency", "procs", "steady /s", "wall s", "CPU µs/deliv.", "machine µs"],
        rows,
    )
    await _refill(bench.database_url, args.limited_rows)
    limited = []
    per_second = RAVELIN_PER_MINUTE / 60
    for processes in (1, 2):
        env = bench.worker_env(OUTBOX_RATE_LIMIT=f"{per_second:g}")
        result = await drain(bench, f"limited x{processes}", [worker] * processes,
                             args.limited_rows, env=env)  # fmt: skip
        rate = result.steady_rate
        limited.append([processes, args.limited_rows, result.steady_s, rate,
                        BACKLOG / rate / 60, BACKLOG / per_second / 60])  # fmt: skip
        print(f"(2) {processes} process(es) done; {load()}", flush=True)
    print_table(
        f"(2) A backlog under OUTBOX_RATE_LIMIT={per_second:g} (Ravelin: "
        f"{RAVELIN_PER_MINUTE:,}/min), stand-in latency {args.latency} s",
        ["procs", "rows", "steady s", "deliveries/s", f"{BACKLOG:,} take (min, measured rate)",
         "at exactly 50/s (min)"],
        limited,
    )  # fmt: skip


async def _refill(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE outbox.messages")
    finally:
        await conn.close()
    await fill(url, rows)


def _rates(result: Drain) -> list[object]:
    return [result.steady_rate, result.wall_s, result.cpu_us, result.machine_cpu_us]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=5_000, help="rows each drain in (1)")
    parser.add_argument("--limited-rows", type=int, default=1_000, help="rows each drain in (2)")
    parser.add_argument("--latency", default="0.03-0.12", help="stand-in latency, s or LOW-HIGH")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved rounds in (1)")
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.limited_rows, args.repeat = 300, 60, 1
    with (
        process_logs() as logs,
        bench_database(args.database_url) as url,
        standin_process(latency=args.latency) as s,
    ):
        run_async(lambda: run(args, Bench(url, s, logs)))


if __name__ == "__main__":
    main()

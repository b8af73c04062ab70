"""Peers in the same run: the worker, the reference pipeline and pgqueuer drain the same bodies.

    python -m bench.peers [--rows 20000] [--repeat 3] [--tiny]

The bodies are the outbox rows' ``payload::text`` (filled once through ``outbox.enqueue``), so
the three pipelines POST the same bytes to the same stand-in (a process of its own). Rounds
interleave, their order rotating, so that other work on the machine falls on all three alike.
The worker (``python -m outbox_worker run``) and the reference (bench/reference_pipeline.py) drain
the outbox rows, reset to pending between runs, measured exactly as in delivery_bench; pgqueuer
(bench/pgqueuer_pipeline.py, the ``bench`` extra) drains its own queue, refilled with the same
bodies before each of its runs, measured from its per-job log. "steady" runs from the first to the
last completion; CPU per delivery is the delivering process's user+system CPU over that window.

Targets: worker >= 1.5x pgqueuer; worker >= 0.9x the reference (median of per-round ratios of
steady rates). Without the ``bench`` extra the pgqueuer runs are skipped with a printed line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time

import asyncpg

from bench.delivery_bench import Bench, Drain, _CpuSample, drain, fill
from bench.harness import (
    API_KEY,
    add_database_option,
    bench_database,
    print_table,
    process_logs,
    python_command,
    run_async,
    standin_control,
    standin_process,
)

WORKER, REFERENCE, PGQUEUER = "worker", "reference", "pgqueuer"
TARGETS = {PGQUEUER: 1.5, REFERENCE: 0.9}  # worker / peer, steady deliveries per second
BODIES = "SELECT payload::text FROM outbox.messages ORDER BY id"


def have_pgqueuer() -> bool:
    return importlib.util.find_spec("pgqueuer") is not None


async def drain_pgqueuer(bench: Bench, bodies: list[bytes], options: list[str]) -> Drain:
    """Refill pgqueuer's queue with ``bodies``; run its pipeline until drained; measure."""
    from bench import pgqueuer_pipeline as pgq  # the bench extra: imported only when installed

    rows = len(bodies)
    await pgq.refill(bench.database_url, bodies)
    standin_control(bench.endpoint_url, "reset", post=True)
    command = python_command(
        "-m", "bench.pgqueuer_pipeline", "--database-url", bench.database_url,
        "--endpoint-url", bench.endpoint_url, "--api-key", API_KEY,
        *options,
    )  # fmt: skip
    conn = await asyncpg.connect(bench.database_url)
    try:
        started = time.time()
        with bench.processes(PGQUEUER, [command], bench.worker_env(), exit_by_itself=True) as procs:
            first: _CpuSample | None = None
            last: _CpuSample | None = None
            deadline = time.monotonic() + 60 + rows / 200
            while True:
                remaining = await conn.fetchval(pgq.REMAINING)
                code = procs[0].poll()
                if time.monotonic() > deadline or code not in (None, 0):
                    raise RuntimeError(f"pgqueuer: {remaining} jobs left; see {bench.logs}")
                if first is None and remaining < rows:
                    first = _CpuSample.take(procs, bench.standin.pid, rows - remaining)
                if remaining == 0:
                    # Drained; the process writes its last log rows and exits by itself.
                    last = last or _CpuSample.take(procs, bench.standin.pid, rows)
                    if code is not None:
                        break
                await asyncio.sleep(0.05)
        result = await conn.fetchrow(pgq.COMPLETED)
        assert result is not None
    finally:
        await conn.close()
    assert last is not None
    per_delivery = last.per_delivery_since(first)
    received = standin_control(bench.endpoint_url, "received")["total"]
    return Drain(
        name=PGQUEUER,
        processes=1,
        rows=rows,
        wall_s=result["last_done"] - started,
        steady_s=result["last_done"] - result["first_done"],
        cpu_us=per_delivery[0],
        standin_cpu_us=per_delivery[1],
        machine_cpu_us=per_delivery[2],
        received=received,
        dead=rows - result["done"],
    )


async def run(args: argparse.Namespace, bench: Bench) -> None:
    await fill(bench.database_url, args.rows)
    conn = await asyncpg.connect(bench.database_url)
    try:
        bodies = [body.encode() for (body,) in await conn.fetch(BODIES)]
    finally:
        await conn.close()
    pipelines = [REFERENCE, WORKER]
    if have_pgqueuer():
        from bench import pgqueuer_pipeline as pgq

        await pgq.install(bench.database_url)
        pipelines.append(PGQUEUER)
    else:
        print("pgqueuer: skipped (not installed; pip install -e '.[bench]')", flush=True)
    worker = python_command("-m", "outbox_worker", "run")
    reference = python_command(
        "-m", "bench.reference_pipeline", "--database-url", bench.database_url,
        "--endpoint-url", bench.endpoint_url, "--api-key", API_KEY, "--total", str(args.rows),
    )  # fmt: skip
    pgqueuer_options = ["--batch-size", str(args.pgqueuer_batch_size),
                        "--picked-limit", str(args.pgqueuer_picked_limit)]  # fmt: skip
    drains: list[tuple[int, Drain]] = []
    for round_ in range(args.repeat):
        shift = round_ % len(pipelines)  # rotate who goes first
        for name in pipelines[shift:] + pipelines[:shift]:
            if name == REFERENCE:
                result = await drain(bench, REFERENCE, [reference], args.rows, exit_by_itself=True)
            elif name == WORKER:
                result = await drain(bench, WORKER, [worker], args.rows)
            else:
                result = await drain_pgqueuer(bench, bodies, pgqueuer_options)
            drains.append((round_ + 1, result))
            print(f"round {round_ + 1}: {name} {result.steady_rate:,.0f}/s", flush=True)
    print_rounds(drains)
    print_summary(drains, pipelines, args.repeat)


def print_rounds(drains: list[tuple[int, Drain]]) -> None:
    print_table(
        "Drains, in the order they ran",
        ["round", "pipeline", "rows", "received", "failed", "wall s", "steady s", "steady /s",
         "CPU µs/deliv.", "stand-in µs", "machine µs"],
        [
            [r, d.name, d.rows, d.received, d.dead, d.wall_s, d.steady_s, d.steady_rate,
             d.cpu_us, d.standin_cpu_us, d.machine_cpu_us]
            for r, d in drains
        ],
    )  # fmt: skip


def print_summary(drains: list[tuple[int, Drain]], pipelines: list[str], repeat: int) -> None:
    by_name = {name: [d for _, d in drains if d.name == name] for name in pipelines}
    worker = by_name[WORKER]
    rows = []
    for name in pipelines:
        runs = by_name[name]
        rate = statistics.median(d.steady_rate for d in runs)
        cpu = _median([d.cpu_us for d in runs])
        if name == WORKER:
            rows.append([name, rate, cpu, "-", "-", "-", "-"])
            continue
        ratios = [w.steady_rate / p.steady_rate for w, p in zip(worker, runs, strict=True)]
        cpu_ratios = [
            p.cpu_us / w.cpu_us for w, p in zip(worker, runs, strict=True) if p.cpu_us and w.cpu_us
        ]
        ratio, target = statistics.median(ratios), TARGETS[name]
        rows.append([
            name, rate, cpu, f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            _median(cpu_ratios), f">= {target}", "met" if ratio >= target else "MISSED",
        ])  # fmt: skip
    print_table(
        f"Medians over {repeat} rounds; worker / peer per round",
        ["pipeline", "steady /s", "CPU µs/deliv.", "worker / peer (min-max)",
         "peer CPU / worker CPU", "target", "result"],
        rows,
    )  # fmt: skip


def _median(values: list[float | None] | list[float]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=20_000, help="bodies each drain delivers")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--pgqueuer-batch-size", type=int, default=100, help="jobs per dequeue")
    parser.add_argument(
        "--pgqueuer-picked-limit", type=int, default=200, help="pgqueuer's max_concurrent_tasks"
    )
    parser.add_argument("--tiny", action="store_true", help="CI size: a few seconds in all")
    args = parser.parse_args()
    if args.tiny:
        args.rows, args.repeat = 300, 1
    with (
        process_logs() as logs,
        bench_database(args.database_url) as url,
        standin_process() as standin,
    ):
        run_async(lambda: run(args, Bench(url, standin, logs)))


if __name__ == "__main__":
    main()

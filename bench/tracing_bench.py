"""Tracing's cost in the worker: CPU per delivery with OTLP tracing on vs off.

    python -m bench.tracing_bench [--rows 20000] [--repeat 3] [--sampled 0.1] [--tiny]

Every row carries a producer's trace context, as an application that traces stores it. The
worker follows the producer's sampling decision (OpenTelemetry's parent-based default), so it
records and exports a span for an attempt only when the producer sampled that trace: the cost
is measured with every trace sampled (the worst case) and with ``--sampled`` of them (a
producer sampling a share of its requests). Spans go over OTLP/HTTP in batches (OTEL_BSP_*'s
defaults) to a sink in this process that decodes nothing and answers at once, so the sink's CPU
is not the worker's. The worker (``python -m outbox_worker run``) drains the same rows with and
without OTEL_EXPORTER_OTLP_ENDPOINT, in interleaved rounds whose order rotates; each drain is
measured as delivery_bench measures it (the worker process's user+system CPU per delivery over
the steady window). Target: tracing on / off <= 1.10 (median of per-round ratios).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

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
from tests.processes import free_port

TARGET = 1.10
OFF, ALL, SHARE = "off", "on-all-sampled", "on-share-sampled"  # also the log files' names
# A distinct traceparent per row, as revision 0009's outbox.insert_message stores it; sampled
# (flags 01) for the share $1 of the rows, spread evenly, else not (00).
TRACE_ROWS = """
UPDATE outbox.messages SET trace_context = jsonb_build_object(
    'traceparent', '00-' || md5(id::text) || '-' || left(md5('span' || id), 16) || '-'
    || CASE WHEN floor(id * $1::float8) > floor((id - 1) * $1::float8) THEN '01' ELSE '00' END)
"""


@asynccontextmanager
async def otlp_sink() -> AsyncIterator[tuple[str, list[int]]]:
    """An OTLP/HTTP endpoint that takes every export and answers 200 at once; yields its URL and
    a one-item list counting the bytes received (to show the spans were exported)."""
    received = [0]

    async def take(request: web.Request) -> web.Response:
        received[0] += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        await runner.cleanup()


async def run(args: argparse.Namespace, bench: Bench) -> None:
    """Fill the rows, then drain them with tracing off, all sampled and a share sampled."""
    await fill(bench.database_url, args.rows)
    worker = python_command("-m", "outbox_worker", "run")
    plain = {k: v for k, v in bench.worker_env().items() if not k.startswith("OTEL_")}
    async with otlp_sink() as (sink_url, received):
        traced = {**plain, "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url,
                  "OTEL_SERVICE_NAME": "outbox-bench"}  # fmt: skip
        runs = [(OFF, plain, 1.0), (ALL, traced, 1.0), (SHARE, traced, args.sampled)]
        drains: list[tuple[int, Drain]] = []
        for round_ in range(args.repeat):
            shift = round_ % len(runs)  # rotate who goes first
            for name, env, sampled in runs[shift:] + runs[:shift]:
                await _sample(bench.database_url, sampled)
                result = await drain(bench, name, [worker], args.rows, env=env)
                drains.append((round_ + 1, result))
                print(f"round {round_ + 1}: {name} {result.cpu_us or 0:,.1f} µs/delivery; "
                      f"{load()}", flush=True)  # fmt: skip
    print_rounds(drains)
    print_summary(drains, args, received[0])


async def _sample(url: str, share: float) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(TRACE_ROWS, share)
    finally:
        await conn.close()


def print_rounds(drains: list[tuple[int, Drain]]) -> None:
    """The table of every drain, in the order they ran."""
    print_table(
        "Drains, in the order they ran",
        ["round", "worker", "rows", "received", "steady /s", "CPU µs/deliv.", "machine µs"],
        [[r, d.name, d.rows, d.received, d.steady_rate, d.cpu_us, d.machine_cpu_us]
         for r, d in drains],
    )  # fmt: skip


def print_summary(drains: list[tuple[int, Drain]], args: argparse.Namespace, sent: int) -> None:
    """The table of CPU per delivery with tracing on / off (medians of per-round ratios)."""
    off = [d for _, d in drains if d.name == OFF]
    rows: list[list[object]] = [
        ["tracing off", statistics.median(d.steady_rate for d in off),
         _median([d.cpu_us for d in off]), "-", "-", "-"],
    ]  # fmt: skip
    for name, label in ((ALL, "on, every trace sampled"),
                        (SHARE, f"on, {args.sampled:.0%} of traces sampled")):  # fmt: skip
        on = [d for _, d in drains if d.name == name]
        pairs = zip(off, on, strict=True)
        ratios = [b.cpu_us / a.cpu_us for a, b in pairs if a.cpu_us and b.cpu_us]
        if not ratios:
            continue
        ratio = statistics.median(ratios)
        rows.append([
            label, statistics.median(d.steady_rate for d in on), _median([d.cpu_us for d in on]),
            f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f})", f"<= {TARGET}",
            "met" if ratio <= TARGET else "MISSED",
        ])  # fmt: skip
    print_table(
        f"Worker CPU per delivery, medians over {args.repeat} interleaved rounds "
        f"({sent:,} bytes of spans exported in all)",
        ["tracing", "steady /s", "CPU µs/deliv.", "CPU on / off (min-max)", "target", "result"],
        rows,
    )


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> None:
    """Parse the options, start the database and the stand-in, run the rounds."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--rows", type=int, default=20_000, help="rows each drain delivers")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--sampled", type=float, default=0.1, help="share of sampled traces")
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

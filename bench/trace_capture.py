"""Table (e) of enqueue_bench: what storing the caller's trace context costs an enqueue.

The application transaction of (a) (INSERT a user, then ``enqueue_async`` on asyncpg), with no
active span and inside the application's span (opened around the transaction, outside the
timing: the span is the application's cost, not the outbox's), in interleaved rounds; and the
capture alone (``trace_context()``) before OpenTelemetry is imported, once imported with no span,
and in a span. Target: in a span / no span <= 1.05. It runs last, since it imports OpenTelemetry.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import asyncpg

from bench.harness import print_table
from outbox_worker import enqueue_async
from outbox_worker.enqueue import trace_context

TARGET = 1.05
INSERT_USER = "INSERT INTO users (email) VALUES ($1)"


async def _txn(conn: asyncpg.Connection, update: dict[str, Any]) -> float:
    started = time.perf_counter()
    async with conn.transaction():
        await conn.execute(INSERT_USER, "bench@example.invalid")
        await enqueue_async(conn, update)
    return time.perf_counter() - started


def _capture_us(repeat: int = 100_000) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        trace_context()
    return (time.perf_counter() - started) / repeat * 1e6


async def capture_table(
    url: str, updates: list[dict[str, Any]], transactions: int, rounds: int
) -> None:
    """Print (e): the enqueue transaction with and without an active span, and the capture."""
    imported_already = "opentelemetry.trace" in sys.modules
    not_imported_us = None if imported_already else _capture_us()
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench-app")
    no_span_capture_us = _capture_us()
    with tracer.start_as_current_span("signup"):
        in_span_capture_us = _capture_us(20_000)
    conn = await asyncpg.connect(url)
    totals = {"no span": 0.0, "in span": 0.0}
    per_round = max(1, transactions // rounds)
    try:
        for i in range(min(200, per_round)):  # warm-up: both statements prepared, pages cached
            with tracer.start_as_current_span("signup"):
                await _txn(conn, updates[i % len(updates)])
            await _txn(conn, updates[i % len(updates)])
        for round_ in range(rounds):
            for name in ("no span", "in span") if round_ % 2 == 0 else ("in span", "no span"):
                for i in range(per_round):
                    update = updates[i % len(updates)]
                    if name == "in span":
                        with tracer.start_as_current_span("signup"):
                            totals[name] += await _txn(conn, update)
                    else:
                        totals[name] += await _txn(conn, update)
    finally:
        await conn.close()
    count = per_round * rounds
    plain_us, traced_us = (totals[n] / count * 1e6 for n in ("no span", "in span"))
    ratio = traced_us / plain_us
    rows: list[list[object]] = [
        ["enqueue_async transaction, no active span", plain_us, 1.0, "", ""],
        ["enqueue_async transaction in a span (context stored)", traced_us, ratio,
         f"<= {TARGET}", "met" if ratio <= TARGET else "MISSED"],
        ["capture alone, OpenTelemetry not imported",
         "imported before (e)" if not_imported_us is None else not_imported_us,
         None if not_imported_us is None else 1 + not_imported_us / plain_us, "", ""],
        ["capture alone, imported, no active span", no_span_capture_us,
         1 + no_span_capture_us / plain_us, "", ""],
        ["capture alone, in a span", in_span_capture_us, 1 + in_span_capture_us / plain_us, "",
         ""],
    ]  # fmt: skip
    print_table(
        f"(e) Trace capture ({rounds} interleaved rounds x {per_round} transactions each; "
        "capture rows: µs per call, and the transaction's ratio with it added)",
        ["path", "µs", "vs no span", "target", "result"],
        rows,
    )

"""A worker's peak memory (RSS) with small, large and oversized payloads: the documented ceiling.

A worker process drains the outbox to a stand-in that answers after a short latency (so claims
pile up against ``OUTBOX_MAX_CLAIMED_BYTES``); its peak resident set (VmHWM) is read from /proc.
Scenarios: typical updates; updates just under the 1 MiB payload limit; rows of 5 MB written
around ``outbox.enqueue`` (dead-lettered unsent, their bodies never leave the database).

    python -m bench.memory_bench            # the figures in bench/README.md
    python -m bench.memory_bench --tiny     # CI: keep the script alive
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg

from bench.harness import (
    API_KEY,
    add_database_option,
    bench_database,
    print_table,
    python_command,
    sample_updates,
    standin_process,
    stop_process,
)
from outbox_worker.payload.limits import MAX_PAYLOAD_BYTES

MIB = 1024 * 1024


def _padded_bodies(count: int, size: int) -> list[str]:
    bodies = []
    for update in sample_updates(count):
        text = json.dumps(update)
        update["padding"] = "x" * max(0, size - len(text) - 20)
        bodies.append(json.dumps(update))
    return bodies


def _fill(url: str, bodies: list[str], *, raw: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE outbox.messages")
        sql = (
            "INSERT INTO outbox.messages (payload) VALUES (%s::jsonb)"
            if raw
            else "SELECT outbox.enqueue(%s::jsonb)"
        )
        with conn.cursor() as cursor:
            cursor.executemany(sql, [(b,) for b in bodies])


def _pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox.messages WHERE state = 'pending'"
        ).fetchone()
    return int(row[0]) if row else 0


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _set_latency(endpoint_url: str, seconds: float) -> None:
    base = endpoint_url.split("/v2/", 1)[0]
    request = urllib.request.Request(
        f"{base}/_standin/faults", data=json.dumps({"latency": seconds}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _drain(url: str, endpoint_url: str, budget: str) -> tuple[float, float]:
    """Run one worker until nothing is pending; its peak RSS (MiB) and the seconds it took."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
    env.update(
        OUTBOX_DATABASE_URL=url,
        OUTBOX_ENDPOINT_URL=endpoint_url,
        OUTBOX_API_KEY=API_KEY,
        OUTBOX_MAX_CLAIMED_BYTES=budget,
        OUTBOX_POLL_INTERVAL="100ms",
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        python_command("-m", "outbox_worker", "run"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    try:
        deadline = time.monotonic() + 600
        while _pending(url) and time.monotonic() < deadline:
            peak = max(peak, _peak_rss_mib(proc.pid))
            time.sleep(0.2)
        peak = max(peak, _peak_rss_mib(proc.pid))
    finally:
        stop_process(proc)
    return peak, time.monotonic() - started


def main() -> None:
    """Print peak worker memory per scenario."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_option(parser)
    parser.add_argument("--tiny", action="store_true", help="a few messages: keeps CI fast")
    args = parser.parse_args()
    small, large, planted = (200, 8, 4) if args.tiny else (5000, 120, 40)
    scenarios = [
        ("typical updates (about 1 KiB)", small, 0, False, "16MiB"),
        ("just under the 1 MiB limit", large, MAX_PAYLOAD_BYTES - 64 * 1024, False, "16MiB"),
        ("just under the limit, budget 64 MiB", large, MAX_PAYLOAD_BYTES - 64 * 1024, False,
         "64MiB"),
        ("5 MB rows written around enqueue", planted, 5 * MIB, True, "16MiB"),
    ]  # fmt: skip
    rows = []
    with bench_database(args.database_url) as url, standin_process() as standin:
        _set_latency(standin.url, 0.05)
        for name, count, size, raw, budget in scenarios:
            bodies = (
                _padded_bodies(count, size)
                if size
                else [json.dumps(u) for u in sample_updates(count)]
            )
            _fill(url, bodies, raw=raw)
            peak, seconds = _drain(url, standin.url, budget)
            rows.append((name, count, f"{size / MIB:.2f}", budget, f"{peak:.0f}", f"{seconds:.1f}"))
    print_table(
        "Worker peak memory (VmHWM) draining to a stand-in answering in 50 ms",
        ["payloads", "rows", "MiB each", "OUTBOX_MAX_CLAIMED_BYTES", "peak RSS MiB", "seconds"],
        rows,
    )


if __name__ == "__main__":
    main()

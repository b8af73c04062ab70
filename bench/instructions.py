"""Instructions per delivery, counted by callgrind: a figure the machine's load does not move.

    python -m bench.instructions [--small 1000] [--large 3000] [--pipeline worker reference]

Each pipeline (``python -m outbox_worker run``; bench/reference_pipeline.py) drains ``--small``
and then ``--large`` pre-filled rows under ``valgrind --tool=callgrind`` (about 50x slower), to
the stand-in in a process of its own; the instructions the delivering process executed per
delivery are the difference between the two runs' totals over the difference in rows, so the
start-up (imports, connecting) drops out. Wall-clock profiles on this shared 2-core machine move
with other sessions' work; instruction counts do not (they still vary a little with how work
batches up: claim and flush sizes). Needs ``valgrind`` (the Debian package) on PATH.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from bench.delivery_bench import Bench, drain, fill
from bench.harness import (
    API_KEY,
    add_database_option,
    bench_database,
    load,
    print_table,
    process_logs,
    python_command,
    run_async,
    standin_process,
)

TOTALS = re.compile(r"([\d,]+)\s+(?:\(100\.0%\)\s+)?PROGRAM TOTALS")


def command(bench: Bench, pipeline: str, rows: int) -> list[str]:
    """The pipeline's command line (without valgrind)."""
    if pipeline == "reference":
        return python_command(
            "-m", "bench.reference_pipeline", "--database-url", bench.database_url,
            "--endpoint-url", bench.endpoint_url, "--api-key", API_KEY, "--total", str(rows),
        )  # fmt: skip
    return python_command("-m", "outbox_worker", "run")


async def count(bench: Bench, pipeline: str, rows: int, out: Path) -> int:
    """Drain ``rows`` reset rows with ``pipeline`` under callgrind; its total instructions."""
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
    # Under callgrind a pipeline runs ~50x slower than a plain run: allow it that much longer,
    # and time to write its callgrind file on exit. The reference exits once its total is
    # acknowledged; the worker is stopped.
    await drain(
        bench,
        f"{pipeline}-{rows}",
        [[*valgrind, *command(bench, pipeline, rows)]],
        rows,
        exit_by_itself=pipeline == "reference",
        deadline_s=120 + rows / 5,
        wait_s=120,
        stop_s=120,
    )
    return _total_instructions(out)


def _total_instructions(out: Path) -> int:
    """The PROGRAM TOTALS line of callgrind_annotate's report."""
    report = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True
    )
    match = TOTALS.search(report.stdout)
    if match is None:
        raise RuntimeError(f"no PROGRAM TOTALS in callgrind_annotate's report of {out}")
    return int(match.group(1).replace(",", ""))


async def run(args: argparse.Namespace, bench: Bench, outputs: Path) -> None:
    results = []
    for pipeline in args.pipeline:
        totals = {}
        for rows in (args.small, args.large):
            await fill(bench.database_url, rows)
            totals[rows] = await count(bench, pipeline, rows, outputs / f"{pipeline}.{rows}.out")
            conn = await asyncpg.connect(bench.database_url)
            try:
                await conn.execute("DELETE FROM outbox.messages")
            finally:
                await conn.close()
            print(f"{pipeline}: {rows} rows, {totals[rows]:,} instructions", flush=True)
        per_delivery = (totals[args.large] - totals[args.small]) / (args.large - args.small)
        results.append([pipeline, totals[args.small], totals[args.large], per_delivery])
    rows = [[*r, r[3] / results[0][3]] for r in results]
    print_table(
        f"Instructions per delivery (callgrind; {args.small} and {args.large} rows; {load()})",
        ["pipeline", f"total, {args.small} rows", f"total, {args.large} rows",
         "per delivery", f"vs {results[0][0]}"],
        rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_database_option(parser)
    parser.add_argument("--small", type=int, default=1000, help="rows of the first drain")
    parser.add_argument("--large", type=int, default=3000, help="rows of the second drain")
    parser.add_argument(
        "--pipeline", nargs="+", default=["reference", "worker"], choices=["reference", "worker"]
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the callgrind files in DIR (for callgrind_annotate) instead of deleting them",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    with (
        process_logs() as logs,
        tempfile.TemporaryDirectory(prefix="outbox-bench-callgrind-") as scratch,
        bench_database(args.database_url) as url,
        standin_process() as standin,
    ):
        outputs = args.keep or Path(scratch)
        outputs.mkdir(parents=True, exist_ok=True)
        run_async(lambda: run(args, Bench(url, standin, logs), outputs))


if __name__ == "__main__":
    main()

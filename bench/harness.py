"""What every benchmark shares: a throwaway database, the stand-in process, tables, payloads.

The database: ``--database-url`` or ``OUTBOX_DATABASE_URL`` names a server where the benchmark may
create and drop a database; with neither, an embedded PostgreSQL (Unix socket) is started for the
run. Either way the benchmark works in a database of its own, migrated to head, dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from outbox_worker import migrate
from outbox_worker.payload.model import parse_update
from tests.cases import VALID_EXAMPLES
from tests.pg import EmbeddedServer, admin_execute, unique_name, with_database

API_KEY = "sk_test_bench"
_T = TypeVar("_T")


def add_database_option(parser: argparse.ArgumentParser) -> None:
    """``--database-url``, defaulting to OUTBOX_DATABASE_URL, else an embedded server."""
    parser.add_argument(
        "--database-url",
        default=os.environ.get("OUTBOX_DATABASE_URL") or None,
        help="server where a throwaway database is created "
        "[env: OUTBOX_DATABASE_URL; default: an embedded PostgreSQL]",
    )


@contextmanager
def server(database_url: str | None) -> Iterator[tuple[str, str]]:
    """Yield (admin URL, description): the given server's, or a fresh embedded server's."""
    if database_url:
        yield database_url, "given server"
        return
    # platformdirs warns unless the runtime dir exists with mode 0700.
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="outbox-xdg-"))
    with tempfile.TemporaryDirectory(prefix="outbox-bench-pg-") as tmp:
        embedded = EmbeddedServer(Path(tmp) / "pgdata")
        try:
            yield embedded.url, "embedded PostgreSQL (Unix socket)"
        finally:
            embedded.stop()


@contextmanager
def bench_database(database_url: str | None) -> Iterator[str]:
    """Yield the URL of a database of this run's own, migrated to head; drop it afterwards."""
    with server(database_url) as (admin_url, where):
        name = unique_name("outbox_bench")
        admin_execute(admin_url, f'CREATE DATABASE "{name}"')
        try:
            url = with_database(admin_url, name)
            migrate.upgrade(url)
            print(f"database: {name} on {where}; cores: {os.cpu_count()}; {load()}", flush=True)
            yield url
            print(f"\nat the end: {load()}", flush=True)
        finally:
            admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def process_logs() -> Iterator[Path]:
    """A folder for the benchmark's process logs: removed after a clean run, kept (and named) if
    the run fails, so a crashed worker's or stand-in's log can be read."""
    logs = Path(tempfile.mkdtemp(prefix="outbox-bench-logs-"))
    try:
        yield logs
    except BaseException:
        print(f"process logs kept in {logs}", flush=True)
        raise
    shutil.rmtree(logs, ignore_errors=True)


def load() -> str:
    """The machine's load averages: other work on the same cores skews every figure."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def sample_updates(count: int) -> list[dict[str, Any]]:
    """``count`` realistic updates (the documented examples in turn), each with its own ids."""
    updates = []
    for i in range(count):
        update = copy.deepcopy(VALID_EXAMPLES[i % len(VALID_EXAMPLES)][1])
        registration = update["registration"]
        if "username" in registration:
            registration["username"] = f"user{i}@example.com"
        for part, key in (("customer", "customerId"), ("supplier", "supplierId")):
            if isinstance(update.get(part), dict):
                update[part][key] = f"bench-{i}"
        updates.append(update)
    return updates


def sample_bodies(count: int) -> list[str]:
    """The stored JSON text of ``count`` updates, as the Python enqueue path serializes them."""
    return [parse_update(update).to_json() for update in sample_updates(count)]


def python_command(*args: str) -> list[str]:
    """A command line running this interpreter."""
    return [sys.executable, *args]


@dataclass(frozen=True, slots=True)
class Standin:
    """A stand-in running in a process of its own."""

    url: str  # its POST /v2/registration URL
    pid: int


@contextmanager
def ready_process(command: list[str], what: str) -> Iterator[tuple[str, int]]:
    """Run ``command`` (which takes ``--ready-file PATH`` last and writes its URL there once it
    serves) in a process of its own, its output to a log; yield (URL, pid) once ready."""
    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        ready = Path(tmp) / "url"
        log = (Path(tmp) / "process.log").open("wb")
        proc = subprocess.Popen(
            [*command, "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 20
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start:\n{tail(log.name)}")
                time.sleep(0.02)
            yield ready.read_text().strip(), proc.pid
        finally:
            stop_process(proc)
            log.close()


@contextmanager
def standin_process(api_key: str = API_KEY, *, latency: str = "0") -> Iterator[Standin]:
    """Run the stand-in in a process of its own (so it does not share the measured loop);
    ``latency`` is its answer delay in seconds, fixed ("0.05") or a range ("0.03-0.12")."""
    command = python_command(
        "-m", "outbox_worker", "standin", "--port", "0", "--api-key", api_key,
        "--latency", latency,
    )  # fmt: skip
    with ready_process(command, "stand-in") as (url, pid):
        yield Standin(url, pid)


def standin_control(endpoint_url: str, path: str, *, post: bool = False) -> Any:
    """Call the stand-in's control API (``received``, ``reset``) and return the JSON answer."""
    base = endpoint_url.split("/v2/", 1)[0]
    request = urllib.request.Request(
        f"{base}/_standin/{path}", data=b"{}" if post else None, method="POST" if post else "GET"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM a child and wait for it (SIGKILL after ``timeout``); return its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def tail(path: str, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float | None:
    """CPU seconds all cores have been busy since boot (Linux /proc/stat), else None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_async(main: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine on uvloop where installed (as the worker does), else plain asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (pastes straight into bench/README.md)."""
    cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(f"\n{title}  (cores: {os.cpu_count()})")
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)

"""Workers as real subprocesses (`python -m outbox_worker run`), for the e2e and fault suites.

BASE_ENV holds short timings (poll 200 ms, HTTP timeout 2 s, lease 8 s, grace 3 s); each
worker's stderr (JSON log lines) is read by a background task, so a test can wait for a log
event. The ``start_worker`` fixture (tests/conftest.py) starts them on the test's database and
stand-in and kills and prints them at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.request import urlopen

from tests.cases import KEY
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]

# Short timings so every scenario fits in seconds. The lease must exceed the HTTP timeout + 5 s.
BASE_ENV: dict[str, str] = {
    "OUTBOX_API_KEY": KEY,
    "OUTBOX_POLL_INTERVAL": "200ms",
    "OUTBOX_HTTP_TIMEOUT": "2s",
    "OUTBOX_LEASE": "8s",
    "OUTBOX_SHUTDOWN_GRACE": "3s",
    "OUTBOX_CONCURRENCY": "16",
    "OUTBOX_BATCH_SIZE": "50",
    "OUTBOX_BACKOFF_BASE": "200ms",
    "OUTBOX_BACKOFF_CAP": "1s",
    "OUTBOX_PROBE_INITIAL": "200ms",
    "OUTBOX_PROBE_CAP": "1s",
}


@dataclass
class WorkerProcess:
    """One `outbox-worker run` subprocess and the log lines it wrote to stderr so far."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines parsed; lines that are not JSON are left out."""
        parsed = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    parsed.append(value)
        return parsed

    def event_names(self) -> list[str]:
        """The ``event`` of every JSON log line, in order."""
        return [str(e.get("event")) for e in self.events]

    async def wait_event(self, name: str, *, timeout: float = 15.0) -> dict[str, Any]:
        """The first log line whose event is ``name``, waiting for it up to ``timeout``."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if e.get("event") == name), None)

        event: dict[str, Any] = await wait_for(
            found, timeout=timeout, message=f"log event {name} from {self}"
        )
        return event

    async def wait_exit(self, *, timeout: float = 15.0) -> int:
        """Wait for the process to end and its stderr to be read; returns the exit code."""
        async with asyncio.timeout(timeout):
            code = await self.process.wait()
            if self.reader is not None:
                await self.reader
        return code

    async def terminate(self, *, timeout: float = 15.0) -> int:
        """SIGTERM the worker and wait for it to exit; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout=timeout)

    def __str__(self) -> str:
        return f"worker pid {self.pid}"


StartWorker = Callable[..., Awaitable[WorkerProcess]]


class Enqueue(Protocol):
    async def __call__(self, count: int, *, prefix: str = ...) -> list[str]: ...


def clean_env() -> dict[str, str]:
    """This process's environment without OUTBOX_* (or OTEL_*) variables."""
    # A developer's own OUTBOX_* settings (or OpenTelemetry's, which turn tracing on) must not
    # leak into a child the test configures.
    return {k: v for k, v in os.environ.items() if not k.startswith(("OUTBOX_", "OTEL_"))}


def worker_env(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment without OUTBOX_* or OTEL_* variables, plus BASE_ENV and
    ``overrides``."""
    env = clean_env()
    env.update(BASE_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


async def spawn_worker(env: Mapping[str, str], *, cwd: Path = REPO) -> WorkerProcess:
    """Start `python -m outbox_worker run` with exactly ``env`` in ``cwd`` (whose outbox_worker
    it runs: another release's checkout, with PYTHONPATH); stderr is read in the background."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "outbox_worker",
        "run",
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = WorkerProcess(process)
    worker.reader = asyncio.create_task(
        _read_lines(process, worker.lines), name=f"stderr-{process.pid}"
    )
    return worker


async def _read_lines(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        lines.append(line.decode("utf-8", "replace").rstrip("\n"))


async def debug_worker_output(
    overrides: Mapping[str, str | None], done: Callable[[], Any], *, message: str
) -> list[str]:
    """Run a debug-logging (JSON) worker until ``done``; its stdout, stderr and /metrics page."""
    port = free_port()
    env = worker_env({**overrides, "OUTBOX_METRICS_PORT": str(port)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "outbox_worker", "run", "--log-level", "debug", "--log-json",
        env=env, cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for(done, message=message)
        metrics = await asyncio.to_thread(
            lambda: urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )
    finally:
        process.terminate()
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    return [out.decode(), err.decode(), metrics]


# --- one CLI command as a subprocess (operator commands, check, migrate) ------------------------


@dataclass(frozen=True)
class Run:
    """A finished command."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.out)


def cli_env(database_url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without OUTBOX_* variables, plus the database URL and ``extra``."""
    env = clean_env()
    if database_url is not None:
        env["OUTBOX_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


def cli(*args: str, db: str | None, env: dict[str, str] | None = None) -> Run:
    """Run `python -m outbox_worker ARGS` with stdin not a terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "outbox_worker", *args],
        env=cli_env(db, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


async def acli(
    *args: str, db: str | None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """Like cli(), without blocking the event loop (a stand-in in this loop keeps serving);
    ``cwd`` as for spawn_worker."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "outbox_worker",
        *args,
        env=cli_env(db, env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port

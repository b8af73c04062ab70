"""`demo --keep`: the web console on the kept database, left running beside the kept server.

It runs as its own process group (it outlives the demo) and writes its address and one-time
admin token to ``console.log`` in the kept server's directory; its pid goes to ``console.pid``
there, so `demo --stop DIR` stops it with the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PORT: Final = 8089
_PID: Final = "console.pid"
_LOG: Final = "console.log"
_START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class KeptConsole:
    """The console the demo left running: where, and the token that signs in."""

    url: str
    token: str
    pid: int


def _spawn(database_url: str, folder: Path, port: int) -> subprocess.Popen[bytes]:
    log = (folder / _LOG).open("wb")
    with log:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
            [sys.executable, "-m", "outbox_worker", "console", "--port", str(port)],
            env={**os.environ, "OUTBOX_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the demo's terminal must not reach it
        )


def _announced(folder: Path, process: subprocess.Popen[bytes]) -> tuple[str, str] | None:
    """(url, token) once the console printed both; None if it exited first or took too long."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        lines = (folder / _LOG).read_text(encoding="utf-8", errors="replace").splitlines()
        url = next((ln.split()[1] for ln in lines if ln.startswith("console: ")), None)
        token = next((ln.split()[-1] for ln in lines if ln.startswith("sign-in token")), None)
        if url and token:
            return url, token
        time.sleep(0.05)
    return None


def start_kept_console(database_url: str, folder: Path) -> KeptConsole | None:
    """Start the console on port 8089 (any free port if taken); None if it does not start."""
    for port in (PORT, 0):
        process = _spawn(database_url, folder, port)
        announced = _announced(folder, process)
        if announced is not None:
            (folder / _PID).write_text(str(process.pid), encoding="ascii")
            return KeptConsole(announced[0], announced[1], process.pid)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()
    return None


def stop_kept_console(folder: Path) -> None:
    """Stop the console `demo --keep` left in ``folder``, if it still runs."""
    pid_file = folder / _PID
    try:
        pid = int(pid_file.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b"outbox_worker\0console"  # no /proc (not Linux): trust the pid file
    if b"outbox_worker" in cmdline and b"console" in cmdline:  # not a reused pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    pid_file.unlink(missing_ok=True)

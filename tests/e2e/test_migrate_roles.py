"""`migrate` by a login that may not create roles, on a fresh server where the roles do not exist:
it migrates, prints the SQL an administrator must run and says so; once that SQL has run, the
producer role enqueues."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from outbox_worker import migrate
from tests.pg import EmbeddedServer, admin_execute, with_database
from tests.processes import cli


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[str]:
    """Admin URL of an embedded PostgreSQL of this module's own: no outbox role exists on it."""
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="outbox-xdg-"))
    with tempfile.TemporaryDirectory(prefix="outbox-roles-pg-") as tmp:
        Path(tmp).chmod(0o755)  # the server runs as another user when the tests run as root
        server = EmbeddedServer(Path(tmp) / "pgdata")
        try:
            yield server.url
        finally:
            server.stop()


def test_migrate_without_createrole_prints_the_roles_sql(fresh_server: str) -> None:
    """A login without CREATEROLE migrates, then prints the roles' SQL and says who must run it."""
    admin_execute(fresh_server, "CREATE ROLE migrator LOGIN NOCREATEROLE NOSUPERUSER")
    admin_execute(fresh_server, "CREATE DATABASE app OWNER migrator")
    admin = with_database(fresh_server, "app")
    as_migrator = admin.replace("://postgres", "://migrator", 1)
    done = cli("migrate", db=as_migrator)
    assert done.code == 0, done.err
    assert (
        "roles not created (outbox_producer, outbox_worker, outbox_operator): "
        "this login may not create roles" in done.out
    )
    printed = done.out.split("CREATEROLE login:\n", 1)[1]
    assert printed.strip() == migrate.roles_sql().strip()
    with psycopg.connect(admin, autocommit=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'outbox_%'"
        ).fetchone() == (0,)
        conn.execute(printed)  # what the administrator is told to run
        conn.execute("CREATE ROLE app_service LOGIN IN ROLE outbox_producer")
    producer = admin.replace("://postgres", "://app_service", 1)
    with psycopg.connect(producer) as conn:
        row = conn.execute(
            "SELECT outbox.enqueue("
            '\'{"timestamp": 1764000000000, "registration": {"success": true}}\'::jsonb)'
        ).fetchone()
    assert row is not None
    assert row[0] >= 1

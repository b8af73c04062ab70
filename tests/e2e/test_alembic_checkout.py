"""Plain `alembic upgrade head` from a checkout runs the same history as `outbox-worker migrate`,
with the database URL from OUTBOX_DATABASE_URL (alembic.ini holds none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from outbox_worker import migrate
from tests.processes import REPO, cli_env
from tests.schemas import schema_diff

ALEMBIC = str(Path(sys.executable).parent / "alembic")


def _alembic(*args: str, database_url: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ALEMBIC, *args],
        cwd=REPO,
        env=cli_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plain_alembic_upgrade_head_builds_the_schema(empty_database_url: str) -> None:
    """`alembic upgrade head` in the checkout migrates the database that OUTBOX_DATABASE_URL names."""
    result = _alembic("upgrade", "head", database_url=empty_database_url)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    assert f"-> {migrate.SCHEMA_HEAD}, " in result.stderr
    with psycopg.connect(empty_database_url) as conn:
        versions = conn.execute("SELECT version_num FROM outbox.alembic_version").fetchall()
    assert versions == [(migrate.SCHEMA_HEAD,)]
    assert schema_diff(empty_database_url) == []
    current = _alembic("current", database_url=empty_database_url)
    assert current.returncode == 0, current.stderr
    assert f"{migrate.SCHEMA_HEAD} (head)" in current.stdout


def test_plain_alembic_without_a_database_url_says_so_in_one_line() -> None:
    """Without OUTBOX_DATABASE_URL, alembic fails with one line naming it, not a traceback."""
    result = _alembic("upgrade", "head", database_url=None)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "OUTBOX_DATABASE_URL is not set" in lines[0]

"""Run the SQL files beside the migrations (functions, roles): one helper for every revision."""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_only

# SQL_DIR re-exported: the benchmarks read the shipped SQL from here.
from outbox_worker.migrate import SQL_DIR as SQL_DIR


def run_script(name: str) -> None:
    """Run a multi-statement SQL file (function bodies included) in the migration's transaction."""
    script = (SQL_DIR / name).read_text(encoding="utf-8")
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    if hasattr(raw, "cursor") and not hasattr(raw, "fetchval"):  # a sync DBAPI (psycopg)
        with raw.cursor() as cursor:
            cursor.execute(script)
    else:  # asyncpg: the simple-query protocol runs many statements at once
        await_only(raw.execute(script))

"""Bounded input: outbox.validate_update refuses oversized, too deep and past-64-bit payloads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQL_DIR = Path(__file__).parent / "sql"


def _run_script(name: str) -> None:
    """Run a multi-statement SQL file (function bodies included) in the migration's transaction."""
    script = (SQL_DIR / name).read_text(encoding="utf-8")
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    if hasattr(raw, "cursor") and not hasattr(raw, "fetchval"):  # a sync DBAPI (psycopg)
        with raw.cursor() as cursor:
            cursor.execute(script)
    else:  # asyncpg: the simple-query protocol runs many statements at once
        await_only(raw.execute(script))


def upgrade() -> None:
    _run_script("0002_bounded_input.sql")


def downgrade() -> None:
    # Restore 0001's definitions first: its validate_update no longer calls the helpers below.
    _run_script("0001_validate_update.sql")
    _run_script("0001_outbox.sql")
    op.execute("DROP FUNCTION outbox.big_integer_paths(jsonb)")
    op.execute("DROP FUNCTION outbox.limit_problem(jsonb)")

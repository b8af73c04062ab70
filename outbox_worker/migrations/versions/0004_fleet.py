"""The fleet's shared send schedule: OUTBOX_RATE_LIMIT holds across every worker.

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op
from sqlalchemy.util import await_only

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQL_DIR = Path(__file__).parent / "sql"


def _run_script(name: str) -> None:
    """Run a multi-statement SQL file in the migration's transaction."""
    script = (SQL_DIR / name).read_text(encoding="utf-8")
    raw = op.get_bind().connection.driver_connection
    assert raw is not None
    if hasattr(raw, "cursor") and not hasattr(raw, "fetchval"):  # a sync DBAPI (psycopg)
        with raw.cursor() as cursor:
            cursor.execute(script)
    else:  # asyncpg: the simple-query protocol runs many statements at once
        await_only(raw.execute(script))


def upgrade() -> None:
    _run_script("0004_fleet.sql")


def downgrade() -> None:
    op.execute("DROP TABLE outbox.send_schedule")

"""Retention by the fleet: outbox.purge_expired, so the worker role deletes only expired rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from outbox_worker.migration_scripts import run_script

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0005_retention.sql")


def downgrade() -> None:
    op.execute("DROP FUNCTION outbox.purge_expired(text, interval, integer, bigint)")

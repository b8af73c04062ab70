"""Bounded input: outbox.validate_update refuses oversized, too deep and past-64-bit payloads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from outbox_worker.migration_scripts import run_script

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0002_bounded_input.sql")


def downgrade() -> None:
    # Restore 0001's definitions first: its validate_update no longer calls the helpers below.
    run_script("0001_validate_update.sql")
    run_script("0001_outbox.sql")
    op.execute("DROP FUNCTION outbox.big_integer_paths(jsonb)")
    op.execute("DROP FUNCTION outbox.limit_problem(jsonb)")

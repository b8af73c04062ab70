"""The fleet's shared send schedule: OUTBOX_RATE_LIMIT holds across every worker.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from outbox_worker.migration_scripts import run_script

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0003_fleet.sql")


def downgrade() -> None:
    op.execute("DROP TABLE outbox.send_schedule")

"""A cheaper enqueue: a fast validity check before the detailed one; no ON CONFLICT without a key.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from outbox_worker.migration_scripts import run_script

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0007_faster_enqueue.sql")


def downgrade() -> None:
    run_script("0007_faster_enqueue_down.sql")

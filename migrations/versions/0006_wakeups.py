"""Wake-ups without a cluster-wide commit lock: enqueue notifies at most once per 10 ms.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from outbox_worker.migration_scripts import run_script

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0006_wakeups.sql")


def downgrade() -> None:
    run_script("0006_wakeups_down.sql")

"""Fleet control: the workers registry, the fleet-wide pause, and the operators' audit log.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from outbox_worker.migration_scripts import run_script

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0008_fleet_control.sql")


def downgrade() -> None:
    run_script("0008_fleet_control_down.sql")

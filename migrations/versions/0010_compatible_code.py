"""The compatibility marker: which code revisions may run against this schema.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Expand only: a new table, nothing on an existing one (so no lock a producer or worker waits for).
From this revision on a worker, the operator commands, the console and the Django check accept a
schema newer than their own head when ``outbox.compatible_code`` lists that head: a pod of the
release before that restarts after `migrate` starts again instead of refusing (exit 2, /readyz
503). Each later revision inserts its own id; an expand revision deletes nothing; a contract
revision deletes the rows of the code it breaks (migrations/README.md).
"""

from collections.abc import Sequence

from outbox_worker.migration_scripts import run_script

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0010_compatible_code.sql")


def downgrade() -> None:
    run_script("0010_compatible_code_down.sql")

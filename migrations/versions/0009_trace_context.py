"""The producer's W3C trace context with each message (nullable column; enqueue's third argument).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from outbox_worker.migration_scripts import run_script

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script("0009_trace_context.sql")


def downgrade() -> None:
    run_script("0009_trace_context_down.sql")

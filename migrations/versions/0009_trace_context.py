"""The producer's W3C trace context with each message: a nullable column, and enqueue overloads
with a third argument that fill it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

from outbox_worker.migration_scripts import locked, run_script

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The new functions first: the column's lock, once taken, is held until the commit.
    run_script("0009_trace_context.sql")
    # Nullable, no default: a catalog change, no rewrite and no scan.
    locked("ALTER TABLE outbox.messages ADD COLUMN trace_context jsonb")
    op.execute(
        "COMMENT ON COLUMN outbox.messages.trace_context IS 'The producer''s W3C trace context "
        'at enqueue ({"traceparent", "tracestate"}), or NULL\''
    )


def downgrade() -> None:
    run_script("0009_trace_context_down.sql")
    locked("ALTER TABLE outbox.messages DROP COLUMN trace_context")

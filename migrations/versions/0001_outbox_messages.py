"""outbox.messages, its indexes and the SQL enqueue API.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from outbox_worker.migration_scripts import run_script

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the storage settings at this revision (see schema.STORAGE for why).
STORAGE = {
    "fillfactor": "80",
    "autovacuum_vacuum_scale_factor": "0.0",
    "autovacuum_vacuum_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0.0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), primary_key=True),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("dedup_key", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response", postgresql.JSONB(), nullable=True),
        sa.Column(
            "history", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")
        ),
        sa.Column("requeue_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'acknowledged', 'dead')", name="messages_state_check"
        ),
        sa.CheckConstraint("attempts >= 0", name="messages_attempts_check"),
        schema="outbox",
        postgresql_with=STORAGE,
    )
    op.create_index(
        "messages_claim_idx",
        "messages",
        ["available_at", "id"],
        schema="outbox",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "messages_dedup_key_key",
        "messages",
        ["dedup_key"],
        unique=True,
        schema="outbox",
        postgresql_where=sa.text("dedup_key IS NOT NULL"),
    )
    op.create_index(
        "messages_dead_idx",
        "messages",
        ["dead_at"],
        schema="outbox",
        postgresql_where=sa.text("state = 'dead'"),
    )
    op.create_index(
        "messages_acknowledged_idx",
        "messages",
        ["acknowledged_at"],
        schema="outbox",
        postgresql_where=sa.text("state = 'acknowledged'"),
    )
    run_script("0001_validate_update.sql")
    run_script("0001_outbox.sql")


def downgrade() -> None:
    # Every function of this revision lives in the outbox schema; drop them all by signature so
    # helper functions of the validator go too. The schema itself stays: it holds alembic_version.
    op.execute(
        """
        DO $$
        DECLARE fn regprocedure;
        BEGIN
          FOR fn IN
            SELECT p.oid::regprocedure FROM pg_proc AS p
            JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = 'outbox'
          LOOP
            EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', fn);
          END LOOP;
        END
        $$
        """
    )
    op.drop_table("messages", schema="outbox")

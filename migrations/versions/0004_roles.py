"""Roles and row rules: producer, worker and operator roles; SECURITY DEFINER enqueue; checks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import Connection, text

from outbox_worker.migration_scripts import locked, run_script, validate_constraints

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("outbox_producer", "outbox_worker", "outbox_operator")

# Whether this login may create roles, or all three exist already (then grants suffice).
_CAN_SET_UP_ROLES = """
SELECT coalesce((SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user), false)
    OR (SELECT count(*) FROM pg_roles WHERE rolname = ANY(:roles)) = :count
"""


# Before this revision any service with INSERT could store rows the worker has to survive; these
# refuse them from now on. Added NOT VALID (an instant catalog change: the ACCESS EXCLUSIVE lock
# is held for milliseconds, not for a scan of the table), repaired and validated after the
# commit by after_commit, so the migration never fails on old rows and the table ends checked.
CONSTRAINTS = ("messages_history_array", "messages_attempts_bounded", "messages_payload_object")
ADD_CONSTRAINTS = """
ALTER TABLE outbox.messages
    ADD CONSTRAINT messages_history_array CHECK (jsonb_typeof(history) = 'array') NOT VALID,
    ADD CONSTRAINT messages_attempts_bounded CHECK (attempts <= 1000000) NOT VALID,
    -- Only a pending row is ever sent; a dead one may keep whatever it was planted with.
    ADD CONSTRAINT messages_payload_object
        CHECK (jsonb_typeof(payload) = 'object' OR state <> 'pending') NOT VALID
"""


def upgrade() -> None:
    run_script("0004_repair.sql")  # a scan, before the lock: rows repaired now wait for no one
    locked(ADD_CONSTRAINTS)
    run_script("0004_security.sql")
    can = op.get_bind().scalar(text(_CAN_SET_UP_ROLES), {"roles": list(ROLES), "count": len(ROLES)})
    if can:
        run_script("0004_roles.sql")
    # Otherwise `outbox-worker migrate` prints 0004_roles.sql for someone who may run it.


def after_commit(connection: Connection) -> None:
    """Repair rows written since, then validate the constraints (env.py calls this after every
    migration's commit; nothing to do once they are valid)."""
    validate_constraints(connection, "messages", CONSTRAINTS, repair="0004_repair.sql")


def downgrade() -> None:
    # The roles stay: they are cluster-wide, and other databases (or login roles) may use them.
    # Only what this database granted them is taken back; DROP ROLE is the administrator's call.
    op.execute(
        """
        DO $$
        DECLARE name text;
        BEGIN
          FOREACH name IN ARRAY ARRAY['outbox_producer', 'outbox_worker', 'outbox_operator'] LOOP
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = name) THEN
              EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA outbox FROM %I', name);
              EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA outbox FROM %I', name);
              EXECUTE format('REVOKE ALL ON SCHEMA outbox FROM %I', name);
            END IF;
          END LOOP;
        END
        $$
        """
    )
    # 0001's definitions: SECURITY INVOKER again, no pinned search_path, PUBLIC may execute.
    run_script("0001_outbox.sql")
    op.execute("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA outbox TO PUBLIC")
    locked(
        "ALTER TABLE outbox.messages DROP CONSTRAINT messages_history_array,"
        " DROP CONSTRAINT messages_attempts_bounded, DROP CONSTRAINT messages_payload_object"
    )

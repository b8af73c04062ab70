"""SQLAlchemy Core metadata: the one definition of ``outbox.messages`` (alembic's target)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "outbox"
NOTIFY_CHANNEL = "outbox"
VERSION_TABLE = "alembic_version"

metadata = MetaData(schema=SCHEMA)


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic filter: the application's own tables live beside ours; compare only ours."""
    if type_ == "schema":
        return name == SCHEMA
    return True


# Storage settings for a hot queue table. Every delivery updates its row two or three times
# (claim, settle), so: leave room in each page for the new row versions (fillfactor), and have
# autovacuum clean dead tuples after a fixed number of changes instead of 20% of a table that may
# hold millions of acknowledged rows, which would let the pending index bloat between runs.
STORAGE = {
    "fillfactor": "80",
    "autovacuum_vacuum_scale_factor": "0.0",
    "autovacuum_vacuum_threshold": "5000",
    "autovacuum_analyze_scale_factor": "0.0",
    "autovacuum_analyze_threshold": "5000",
    "autovacuum_vacuum_cost_delay": "0",
}

messages = Table(
    "messages",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    # The body exactly as sent: the worker sends payload::text unchanged on every attempt.
    Column("payload", JSONB, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("dedup_key", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Next moment a worker may claim the row; while claimed, also the end of the lease.
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # Set while a worker holds the row; a settle applies only with the token it claimed with.
    Column("lease_token", Uuid, nullable=True),
    Column("claimed_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("dead_at", DateTime(timezone=True), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    # Ravelin's error details of the last answer (message, traceId, validationErrors).
    Column("last_response", JSONB, nullable=True),
    # [{at, status, error, latency_ms}, ...], newest last, capped by the worker's history_cap.
    Column("history", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("requeue_count", Integer, nullable=False, server_default=text("0")),
    Column("requeued_at", DateTime(timezone=True), nullable=True),
    # The producer's W3C trace context at enqueue ({"traceparent", "tracestate"}; revision 0009):
    # the worker's spans of this message join that trace (README "Tracing").
    Column(
        "trace_context",
        JSONB,
        nullable=True,
        comment="The producer's W3C trace context at enqueue "
        '({"traceparent", "tracestate"}), or NULL',
    ),
    CheckConstraint("state IN ('pending', 'acknowledged', 'dead')", name="messages_state_check"),
    CheckConstraint("attempts >= 0", name="messages_attempts_check"),
    # Rows no producer or other service can plant (revision 0004): the worker's own history is an
    # array, its count is bounded far below the integer limit, and a pending body is an object.
    CheckConstraint("jsonb_typeof(history) = 'array'", name="messages_history_array"),
    CheckConstraint("attempts <= 1000000", name="messages_attempts_bounded"),
    CheckConstraint(
        "jsonb_typeof(payload) = 'object' OR state <> 'pending'", name="messages_payload_object"
    ),
    postgresql_with=STORAGE,
)

# Claims read only pending rows in available_at order; a partial index keeps that fast however
# many acknowledged rows remain in the table.
Index(
    "messages_claim_idx",
    messages.c.available_at,
    messages.c.id,
    postgresql_where=text("state = 'pending'"),
)
Index(
    "messages_dedup_key_key",
    messages.c.dedup_key,
    unique=True,
    postgresql_where=text("dedup_key IS NOT NULL"),
)
# `dead list` (newest first) and `purge`/`stats` by age of the final state.
Index("messages_dead_idx", messages.c.dead_at, postgresql_where=text("state = 'dead'"))
Index(
    "messages_acknowledged_idx",
    messages.c.acknowledged_at,
    postgresql_where=text("state = 'acknowledged'"),
)

# The fleet's shared send schedule for OUTBOX_RATE_LIMIT: the start of the next send slot no
# worker has reserved yet (see store/delivery.py RESERVE_SEND_TIME).
send_schedule = Table(
    "send_schedule",
    metadata,
    Column("name", Text, primary_key=True),
    Column("next_slot_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    comment="OUTBOX_RATE_LIMIT across the fleet: the start of the next unreserved send slot",
)
SEND_SCHEDULE = "registration"  # the one schedule: every worker sends to the same endpoint

# Fleet control (revision 0008; its SQL file has the triggers and functions these need).
# The running workers, each refreshing its own row every few seconds (seen_at, the database's
# clock): one not seen for store.fleet.GONE_AFTER is shown as gone, and deleted later.
workers = Table(
    "workers",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("state", Text, nullable=False, server_default=text("'starting'")),
    Column("paused_by", Text, nullable=True),  # configuration, outage or operator
    Column("listening", Boolean, nullable=False, server_default=text("false")),
    Column("sends_last_minute", Integer, nullable=False, server_default=text("0")),
    Column("in_flight", Integer, nullable=False, server_default=text("0")),
    CheckConstraint(
        "state IN ('starting', 'delivering', 'paused', 'stopping', 'stopped')",
        name="workers_state_check",
    ),
    CheckConstraint(
        "paused_by IN ('configuration', 'outage', 'operator')", name="workers_paused_by_check"
    ),
    CheckConstraint(
        "length(host) <= 255 AND length(version) <= 64 AND sends_last_minute >= 0 "
        "AND in_flight >= 0",
        name="workers_bounded",
    ),
    comment="The running workers, each refreshing its own row every few seconds (seen_at)",
)

# The fleet-wide pause: one row (FLEET_PAUSE), set by operators, read by every worker.
pause = Table(
    "pause",
    metadata,
    Column("name", Text, primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("reason", Text, nullable=True),
    Column("paused_at", DateTime(timezone=True), nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("db_role", Text, nullable=False, server_default=text("SESSION_USER")),
    Column("via", Text, nullable=True),
    Column("actor", Text, nullable=True),
    CheckConstraint("length(reason) <= 500 AND length(actor) <= 200", name="pause_bounded"),
    comment="The fleet-wide delivery pause: while paused, no worker starts a send",
)
FLEET_PAUSE = "fleet"  # the one pause: every worker of the database obeys it

# What operators did: append-only (grants, and a trigger that refuses UPDATE, TRUNCATE and a
# DELETE of rows younger than 90 days, and stamps each new row with now() and session_user).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # One action's rows share it: a requeue of many batches writes one row per transaction.
    Column("operation", Uuid, nullable=False),
    Column("action", Text, nullable=False),
    Column("db_role", Text, nullable=False, server_default=text("SESSION_USER")),
    Column("via", Text, nullable=False),  # cli or console
    Column("actor", Text, nullable=True),  # the OS user (CLI) or the signed-in user (console)
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("row_count", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("action ~ '^[a-z][a-z_.]{0,39}$'", name="audit_log_action_check"),
    CheckConstraint("via ~ '^[a-z][a-z_]{0,19}$'", name="audit_log_via_check"),
    CheckConstraint(
        "length(actor) <= 200 AND jsonb_typeof(details) = 'object' AND row_count >= 0",
        name="audit_log_bounded",
    ),
    comment="What operators did, append-only: one row per transaction of an action",
)
Index("audit_log_at_idx", audit_log.c.at)

# The compatibility marker (revision 0010): the code revisions (each release's SCHEMA_HEAD) that
# may run against the schema as it is. Expand revisions add their own id; a contract revision
# deletes the ids of the code it breaks (migrations/README.md).
compatible_code = Table(
    "compatible_code",
    metadata,
    Column("revision", Text, primary_key=True),
    CheckConstraint("length(revision) BETWEEN 1 AND 64", name="compatible_code_bounded"),
    comment="The code revisions (a release's schema head) that may run against this schema",
)

#!/usr/bin/env bash
# A shell producer for outbox-worker with psql: the application's own INSERT and the outbox row
# commit together or not at all, because both run inside one BEGIN ... COMMIT.
#
#   OUTBOX_DATABASE_URL=postgresql://app@db/app examples/psql/enqueue.sh '<update JSON>' [dedup-key] [--dry-run]
#
# The update is Ravelin's registration update in its wire format (camelCase JSON). outbox.enqueue
# validates it (SQLSTATE 22023 naming every bad field; nothing is stored then), stores it, and
# returns the message id; the same dedup key again returns the first message's id. --dry-run
# does everything and rolls back. Exit codes: 0 stored (or rolled back), 3 the database refused
# (psql's code under ON_ERROR_STOP), 2 bad usage.
set -euo pipefail

usage() {
  echo "$1" >&2
  echo "usage: OUTBOX_DATABASE_URL=postgresql://... $0 '<update JSON>' [dedup-key] [--dry-run]" >&2
  exit 2
}

[ -n "${OUTBOX_DATABASE_URL:-}" ] || usage "OUTBOX_DATABASE_URL is not set; set it to your database's postgresql:// URL"
dry_run=false
args=()
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then dry_run=true; else args+=("$arg"); fi
done
[ "${#args[@]}" -ge 1 ] || usage "missing the update JSON"
payload=${args[0]}
dedup_key=${args[1]:-}

# psql substitutes :'name' as a quoted literal (PQescapeLiteral), so the payload cannot break out
# of its string; the variables travel on the command line, the SQL stays fixed text.
# ON_ERROR_STOP: the first failed statement ends psql with exit code 3, before COMMIT, and the
# server rolls the open transaction back when the session ends.
exec psql "$OUTBOX_DATABASE_URL" --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
  --set payload="$payload" --set dedup_key="$dedup_key" --set dry_run="$dry_run" <<'SQL'
-- Errors print their message only: the default verbosity would echo the statement, and with it
-- the payload (personal data) when PostgreSQL cannot parse it as JSON.
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS example_users (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username text,
  created_at timestamptz NOT NULL DEFAULT now()
);
BEGIN;
INSERT INTO example_users (username) VALUES (:'payload'::jsonb #>> '{registration,username}')
  RETURNING id AS user_id \gset
SELECT outbox.enqueue(:'payload'::jsonb, NULLIF(:'dedup_key', '')) AS message_id \gset
\if :dry_run
ROLLBACK;
\echo rolled back (dry run): user :user_id, outbox message :message_id
\else
COMMIT;
\echo committed: user :user_id, outbox message :message_id
\endif
SQL
